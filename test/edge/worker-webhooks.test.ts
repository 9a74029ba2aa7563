/**
 * Webhooks on the Worker (API.md "Webhooks"): the routes served by the Worker in workerd
 * (Miniflare 5) and delivery by each webhook's `WebhookDeliverer` Durable Object, hinted
 * by the thread's sequencer, to a real receiver on loopback that verifies every message
 * with `standardwebhooks`: in seq order per thread, retried after failures, paused by a
 * 410, and at least once across a workerd restart while the receiver fails.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type JsonResult, readJsonResult } from "../support/http.ts";
import { type HranaServer, startHranaServer } from "../support/hrana-server.ts";
import { waitFor } from "../support/wait.ts";
import { type Received, WebhookReceiver } from "../support/webhook-receiver.ts";
import { startWorker, type WorkerServer } from "../support/worker-process.ts";

// One tenant per test: a writer trusts the subscriptions it read for 10 s (SUBSCRIPTIONS_TTL_MS).
const TENANTS = ["order", "retry", "gone", "restart", "owner", "other"] as const;
type Tenant = (typeof TENANTS)[number];
const AUTH_TOKENS = TENANTS.map((tenant) => `wh-${tenant}-token:${tenant}`).join(",");

let dir: string;
let hrana: HranaServer;
let worker: WorkerServer;
let to: WebhookReceiver;
let vars: Record<string, string>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "artifacts-worker-webhooks-"));
  hrana = await startHranaServer({ path: join(dir, "cache.db") });
  to = await WebhookReceiver.start();
  vars = {
    LIBSQL_URL: hrana.url,
    AUTH_TOKENS,
    WEBHOOK_ALLOW_HTTP_LOOPBACK: "1",
    WEBHOOK_RETRY_BASE_MS: "50",
  };
  worker = await startWorker(vars);
});

afterAll(async () => {
  await worker?.stop();
  if (worker) rmSync(worker.persist, { recursive: true, force: true });
  await to?.close();
  await hrana?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function call(tenant: Tenant, method: string, path: string, body?: unknown): Promise<JsonResult> {
  const headers: Record<string, string> = { authorization: `Bearer wh-${tenant}-token` };
  const init: RequestInit = { method, headers };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    headers["content-type"] = "application/json";
  }
  return readJsonResult(await fetch(`${worker.url}${path}`, init));
}

async function subscribe(tenant: Tenant, path: string, extra: Record<string, unknown> = {}) {
  const created = await call(tenant, "POST", "/v1/webhooks", { url: to.url(path), ...extra });
  expect(created.status, created.text).toBe(201);
  to.secrets.set(path, created.json.webhook.secret);
  return created.json.webhook as { id: string; secret: string };
}

async function write(tenant: Tenant, threadId: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await call(tenant, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "note", payload: { i } });
    expect(r.status, r.text).toBe(201);
  }
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** API.md's order: seq s is sent only after every earlier seq of its thread was acknowledged. */
function expectSentInOrder(requests: Received[], expected: number[]): void {
  const acked = new Set<number>();
  for (const request of requests) {
    const missing = expected.filter((seq) => seq < request.seq && !acked.has(seq));
    expect(missing, `seq ${request.seq} was sent before ${missing.join(",")} was acknowledged`).toEqual([]);
    if (request.status >= 200 && request.status < 300) acked.add(request.seq);
  }
}

/** Every seq of `expected` acknowledged at least once, each message verified, sent in order. */
function expectDelivered(path: string, threadId: string, expected: number[]): void {
  const requests = to.to(path, threadId);
  for (const request of requests) expect(request.verified, request.verifyError).toBe(true);
  expectSentInOrder(requests, expected);
  expect([...new Set(to.acked(path, threadId))].sort((a, b) => a - b)).toEqual(expected);
}

const allAcked = (path: string, threads: Record<string, number>) => () =>
  Object.entries(threads).every(([threadId, n]) => new Set(to.acked(path, threadId)).size >= n);

describe("webhooks on the Worker", () => {
  it("delivers every event of two threads, signed, once each, in seq order per thread", async () => {
    const hook = await subscribe("order", "/order");
    await Promise.all([write("order", "a", 8), write("order", "b", 8)]);
    await waitFor("every event acknowledged", allAcked("/order", { a: 8, b: 8 }));
    for (const threadId of ["a", "b"]) {
      expectDelivered("/order", threadId, range(1, 8));
      // Nothing failed: exactly once.
      expect(to.to("/order", threadId).map((r) => r.seq)).toEqual(range(1, 8));
      expect(to.to("/order", threadId)[0]?.message.type).toBe("artifact.updated");
    }
    const deliveries = await call("order", "GET", `/v1/webhooks/${hook.id}/deliveries`);
    expect(deliveries.status, deliveries.text).toBe(200);
    expect(deliveries.json.deliveries.length).toBe(16);
    expect(deliveries.json.deliveries[0]).toMatchObject({ outcome: "delivered", responseStatus: 200, attempt: 1 });

    // A replay moves thread a's cursor back to 5: 6, 7 and 8 come again, in order.
    const replay = await call("order", "POST", `/v1/webhooks/${hook.id}/replay`, { threadId: "a", since: 5 });
    expect(replay.status, replay.text).toBe(202);
    await waitFor("the replay delivered", () => to.to("/order", "a").length === 11);
    expect(to.to("/order", "a").map((r) => r.seq)).toEqual([...range(1, 8), 6, 7, 8]);
  }, 60_000);

  it("retries a failing receiver and delivers in order once it recovers", async () => {
    const failures = new Map<string, number>();
    const respond = to.respond;
    to.respond = (request) => {
      if (request.path !== "/retry") return respond(request, 0);
      // Each of the first three events fails twice, then succeeds.
      const n = failures.get(request.id) ?? 0;
      failures.set(request.id, n + 1);
      return { status: request.seq <= 3 && n < 2 ? 500 : 200 };
    };
    try {
      await subscribe("retry", "/retry", { threads: ["r"] });
      await write("retry", "r", 5);
      await waitFor("every event acknowledged", allAcked("/retry", { r: 5 }));
      expectDelivered("/retry", "r", range(1, 5));
      const requests = to.to("/retry", "r");
      expect(requests.filter((r) => r.status === 500).length).toBe(6);
      // A retry is the same message (the same id and body).
      const first = requests.filter((r) => r.seq === 1);
      expect(new Set(first.map((r) => r.id)).size).toBe(1);
      expect(new Set(first.map((r) => r.body)).size).toBe(1);
    } finally {
      to.respond = respond;
    }
  }, 60_000);

  it("pauses on 410 Gone and resumes where it stopped once active again", async () => {
    const respond = to.respond;
    let gone = true;
    to.respond = (request, attempt) => request.path === "/gone" && gone ? { status: 410 } : respond(request, attempt);
    try {
      const hook = await subscribe("gone", "/gone", { threads: ["g"] });
      await write("gone", "g", 3);
      const paused = await waitFor("paused", async () => {
        const r = await call("gone", "GET", `/v1/webhooks/${hook.id}`);
        return r.json.webhook.status === "paused" && r.json.webhook;
      });
      expect(paused.statusReason).toMatch(/410/);
      expect(to.to("/gone", "g").map((r) => r.seq)).toEqual([1]);
      gone = false;
      const resumed = await call("gone", "PATCH", `/v1/webhooks/${hook.id}`, { status: "active" });
      expect(resumed.status, resumed.text).toBe(200);
      await waitFor("every event acknowledged", allAcked("/gone", { g: 3 }));
      expectDelivered("/gone", "g", range(1, 3));
    } finally {
      to.respond = respond;
    }
  }, 60_000);

  it("delivers every event at least once, in order, across a workerd restart while the receiver fails", async () => {
    const respond = to.respond;
    let failing = true;
    to.respond = (request, attempt) =>
      request.path === "/restart" && failing ? { status: 500 } : respond(request, attempt);
    try {
      await subscribe("restart", "/restart");
      await Promise.all([write("restart", "x", 4), write("restart", "y", 4)]);
      await waitFor(
        "both threads attempted and failing",
        () => to.to("/restart", "x").length >= 2 && to.to("/restart", "y").length >= 2,
      );
      // workerd goes as a whole (its objects and their alarms with it) and comes back on the same storage.
      await worker.stop({ keepState: true });
      const before = to.to("/restart").length;
      worker = await startWorker(vars, { persist: worker.persist });
      failing = false;
      await waitFor("every event acknowledged after the restart", allAcked("/restart", { x: 4, y: 4 }), {
        timeoutMs: 40_000,
      });
      expect(to.to("/restart").length).toBeGreaterThan(before);
      expectDelivered("/restart", "x", range(1, 4));
      expectDelivered("/restart", "y", range(1, 4));
    } finally {
      to.respond = respond;
    }
  }, 90_000);

  it("keeps each tenant's webhooks its own: another tenant's is 404", async () => {
    const hook = await subscribe("owner", "/owner", { threads: ["o"] });
    for (
      const [method, path] of [
        ["GET", `/v1/webhooks/${hook.id}`],
        ["PATCH", `/v1/webhooks/${hook.id}`],
        ["DELETE", `/v1/webhooks/${hook.id}`],
        ["GET", `/v1/webhooks/${hook.id}/deliveries`],
        ["POST", `/v1/webhooks/${hook.id}/rotate-secret`],
        ["POST", `/v1/webhooks/${hook.id}/replay`],
      ] as const
    ) {
      const body = method === "PATCH"
        ? { status: "paused" }
        : path.endsWith("replay")
        ? { threadId: "o", since: 0 }
        : undefined;
      const r = await call("other", method, path, body);
      expect({ method, path, status: r.status, code: r.json?.code }).toEqual({
        method,
        path,
        status: 404,
        code: "webhook_not_found",
      });
    }
    expect((await call("other", "GET", "/v1/webhooks")).json.webhooks).toEqual([]);
    const mine = await call("owner", "GET", `/v1/webhooks/${hook.id}`);
    expect(mine.json.webhook.status).toBe("active");
    // Deleted: delivery stops, and the webhook is gone.
    expect((await call("owner", "DELETE", `/v1/webhooks/${hook.id}`)).status).toBe(204);
    expect((await call("owner", "GET", `/v1/webhooks/${hook.id}`)).status).toBe(404);
  }, 60_000);
});

describe("webhooks on a Worker without the sequencer binding", () => {
  it("hints the deliverers from the Worker itself after its own commits", async () => {
    const alone = await startWorker(vars, { sequencer: false });
    try {
      const post = (path: string, body: unknown) =>
        fetch(`${alone.url}${path}`, {
          method: "POST",
          headers: { authorization: "Bearer wh-order-token", "content-type": "application/json" },
          body: JSON.stringify(body),
        });
      const created = await post("/v1/webhooks", { url: to.url("/alone") });
      expect(created.status).toBe(201);
      to.secrets.set("/alone", (await created.json()).webhook.secret);
      for (let i = 0; i < 4; i++) {
        const r = await post("/v1/threads/solo/artifacts", { artifactType: "note", payload: { i } });
        expect(r.status).toBe(201);
        await r.body?.cancel();
      }
      await waitFor("every event acknowledged", allAcked("/alone", { solo: 4 }));
      expectDelivered("/alone", "solo", range(1, 4));
    } finally {
      await alone.stop();
    }
  }, 60_000);
});
