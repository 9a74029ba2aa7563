import { mkdtempSync, rmSync } from "node:fs";
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

// The bundle `wrangler deploy` would upload, in workerd (Miniflare 5): rollout in local
// R2 (`ROLLOUTS`), cache in a real libSQL file reached over HTTP (Hrana) with
// `@libsql/client/web`, exactly the production path with Turso.
describeHttpContract("Worker in workerd (R2 + libSQL over HTTP)", async (env) => {
  const dir = mkdtempSync(join(tmpdir(), "artifacts-worker-contract-"));
  const hrana = await startHranaServer({ path: join(dir, "cache.db") });
  const vars = { LIBSQL_URL: hrana.url, AUTH_TOKENS: `${WORKER_TOKEN}:local`, ...env };
  let worker = await startWorker(vars);
  return {
    fetch: (path, init) => fetch(`${worker.url}${path}`, withToken(init)),
    // workerd as a whole goes (its Durable Objects with it) and comes back on the same R2 and DO storage.
    restart: async () => {
      await worker.stop({ keepState: true });
      worker = await startWorker(vars, { persist: worker.persist });
    },
    close: async () => {
      await worker.stop();
      rmSync(worker.persist, { recursive: true, force: true });
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
    const code = bundle.code;
    // The fs adapter, the Node runtime and the native libSQL client stay out of it.
    expect(code).not.toMatch(/from\s*["']node:(fs|path|child_process)/);
    expect(code).not.toContain("class FsBlobStore");
    expect(code).not.toMatch(/from\s*["']libsql["']/);
    // Built without esbuild's keepNames (wrangler.toml): no closure pays a defineProperty of its name.
    expect(code).not.toContain("__name(");
    expect(code).toMatch(/\bThreadSequencer = class\b/);
    console.log(
      `worker bundle: ${(bundle.bytes / 1024).toFixed(1)} KiB, gzip ${(bundle.gzipBytes / 1024).toFixed(1)} KiB`,
    );
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

describe("Worker live path", () => {
  it("wakes an open stream through its thread's sequencer, long before the poll interval", async () => {
    const dir = mkdtempSync(join(tmpdir(), "artifacts-worker-feeds-"));
    const hrana = await startHranaServer({ path: join(dir, "cache.db") });
    // Polling alone would take a minute: an event that arrives in this test came by the sequencer's push.
    const worker = await startWorker({
      LIBSQL_URL: hrana.url,
      AUTH_TOKENS: `${WORKER_TOKEN}:local`,
      SSE_POLL_MS: "60000",
      SSE_PING_MS: "100",
    });
    const controller = new AbortController();
    try {
      const threadId = `feeds-${Date.now().toString(36)}`;
      const stream = await fetch(
        `${worker.url}/v1/threads/${threadId}/events`,
        withToken({ signal: controller.signal }),
      );
      expect(stream.status).toBe(200);
      const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
      const decoder = new TextDecoder();
      let text = "";
      // Pings come only from an idle stream waiting on its feed: after two, the feed has
      // read the (empty) log and only a hint or the minute-long poll can bring news.
      while ((text.match(/^: ping$/gm) ?? []).length < 2) {
        text += decoder.decode((await reader.read()).value, { stream: true });
      }
      const ok = await fetch(`${worker.url}/v1/threads/${threadId}/artifacts`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${WORKER_TOKEN}` },
        body: JSON.stringify({ artifactType: "plan", payload: { via: "feeds" } }),
      });
      expect(ok.status).toBe(201);
      while (!text.includes("event: artifact-updated")) {
        const { done, value } = await reader.read();
        if (done) throw new Error(`stream ended before the event:\n${text}`);
        text += decoder.decode(value, { stream: true });
      }
      expect(text).toContain("id: 1\nevent: artifact-updated\n");
      expect(text).toContain('"via":"feeds"');
    } finally {
      controller.abort();
      await worker.stop();
      await hrana.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
