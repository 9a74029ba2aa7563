import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { describeHttpContract } from "../http/contract.ts";
import { startHranaServer } from "../support/hrana-server.ts";
import { buildWorkerBundle, startWorker } from "../support/worker-process.ts";

const WORKER_TOKEN = "worker-contract-token";

/** The contract suite speaks plain HTTP; the Worker requires a token, so every call carries one. */
function withToken(init: RequestInit = {}): RequestInit {
  const headers = new Headers(init.headers);
  if (!headers.has("authorization")) headers.set("authorization", `Bearer ${WORKER_TOKEN}`);
  return { ...init, headers };
}

// The bundle `wrangler deploy` would upload, in workerd (Miniflare 4): rollout in local
// R2 (`ROLLOUTS`), cache in a real libSQL file reached over HTTP (Hrana) with
// `@libsql/client/web`, exactly the production path with Turso.
describeHttpContract("Worker in workerd (R2 + libSQL over HTTP)", async (env) => {
  const dir = mkdtempSync(join(tmpdir(), "artifacts-worker-contract-"));
  const hrana = await startHranaServer({ path: join(dir, "cache.db") });
  const worker = await startWorker({ LIBSQL_URL: hrana.url, AUTH_TOKENS: `${WORKER_TOKEN}:local`, ...env });
  return {
    fetch: (path, init) => fetch(`${worker.url}${path}`, withToken(init)),
    close: async () => {
      await worker.stop();
      await hrana.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe("Worker without authentication configured", () => {
  it("refuses to serve tenant data (a Worker is never on loopback)", async () => {
    const worker = await startWorker({ LIBSQL_URL: "http://127.0.0.1:9" });
    try {
      const response = await fetch(`${worker.url}/v1/threads/x`);
      expect(response.status).toBe(503);
      expect(await response.json()).toMatchObject({ code: "unavailable", detail: "the service is misconfigured" });
    } finally {
      await worker.stop();
    }
  });
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
    const worker = await startWorker({ LIBSQL_URL: hrana.url, AUTH_TOKENS: `${WORKER_TOKEN}:local` });
    try {
      const post = (threadId: string) =>
        fetch(`${worker.url}/v1/threads/${threadId}/artifacts`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${WORKER_TOKEN}` },
          body: JSON.stringify({ artifactType: "plan", payload: { n: 1 } }),
        });
      expect((await post("w1")).status).toBe(201);
      const read = await fetch(`${worker.url}/v1/threads/w1`, withToken());
      expect(read.headers.get("x-artifacts-source")).toBe("cache");
      expect((await read.json()).thread.rolloutSeq).toBe(1);
      expect(hrana.requests).toBeGreaterThan(0);

      await hrana.close();
      expect((await post("w1")).status).toBe(201);
      const fallback = await fetch(`${worker.url}/v1/threads/w1`, withToken());
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
