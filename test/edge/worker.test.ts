import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { describeHttpContract } from "../http/contract.ts";
import { startHranaServer } from "../support/hrana-server.ts";
import { buildWorkerBundle, startWorker } from "../support/worker-process.ts";

// The bundle `wrangler deploy` would upload, in workerd (Miniflare 4): rollout in local
// R2 (`ROLLOUTS`), cache in a real libSQL file reached over HTTP (Hrana) with
// `@libsql/client/web`, exactly the production path with Turso.
describeHttpContract("Worker in workerd (R2 + libSQL over HTTP)", async (env) => {
  const dir = mkdtempSync(join(tmpdir(), "artifacts-worker-contract-"));
  const hrana = await startHranaServer({ path: join(dir, "cache.db") });
  const worker = await startWorker({ LIBSQL_URL: hrana.url, ...env });
  return {
    fetch: (path, init) => fetch(`${worker.url}${path}`, init),
    close: async () => {
      await worker.stop();
      await hrana.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe("Worker bundle", () => {
  it("bundles with wrangler deploy --dry-run and carries no Node-only code", async () => {
    const bundle = await buildWorkerBundle();
    expect(bundle.bytes).toBeGreaterThan(0);
    expect(bundle.gzipBytes).toBeLessThan(bundle.bytes);
    const code = readFileSync(bundle.main, "utf8");
    // The fs adapter, the Node runtime and the native libSQL client stay out of it.
    expect(code).not.toMatch(/from\s*["']node:(fs|path|child_process)/);
    expect(code).not.toContain("class FsBlobStore");
    expect(code).not.toMatch(/from\s*["']libsql["']/);
    console.log(`worker bundle: ${(bundle.bytes / 1024).toFixed(1)} KiB, gzip ${(bundle.gzipBytes / 1024).toFixed(1)} KiB`);
  });
});

describe("Worker cache path", () => {
  it("serves reads from libSQL over HTTP, and from R2 while libSQL is unreachable", async () => {
    const dir = mkdtempSync(join(tmpdir(), "artifacts-worker-cache-"));
    const hrana = await startHranaServer({ path: join(dir, "cache.db") });
    const worker = await startWorker({ LIBSQL_URL: hrana.url });
    try {
      const post = (threadId: string) =>
        fetch(`${worker.url}/v1/threads/${threadId}/artifacts`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ artifactType: "plan", payload: { n: 1 } }),
        });
      expect((await post("w1")).status).toBe(201);
      const read = await fetch(`${worker.url}/v1/threads/w1`);
      expect(read.headers.get("x-artifacts-source")).toBe("cache");
      expect((await read.json()).thread.rolloutSeq).toBe(1);
      expect(hrana.requests).toBeGreaterThan(0);

      await hrana.close();
      expect((await post("w1")).status).toBe(201);
      const fallback = await fetch(`${worker.url}/v1/threads/w1`);
      expect(fallback.status).toBe(200);
      expect(fallback.headers.get("x-artifacts-source")).toBe("rollout");
      expect((await fallback.json()).thread.artifacts).toHaveLength(2);
      expect(await (await fetch(`${worker.url}/healthz`)).json()).toEqual({ ok: true, cache: "down", rollout: "up" });
    } finally {
      await worker.stop();
      await hrana.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
