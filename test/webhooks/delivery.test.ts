// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
/**
 * Webhook delivery (API.md "Webhooks"): the dispatcher over a real service in process
 * (real libSQL file, real fs rollout, the real routes and registry), against a real
 * receiver on loopback that verifies every message with the `standardwebhooks` package.
 * Each event at least once (exactly once in these normal runs), in seq order per
 * (webhook, thread), signed, shaped `{type, timestamp, data}` with `data` the SSE data;
 * retries keep the message id; 500s, timeouts and redirects are failures; 410 pauses;
 * the retry window ends in `failing`; resume, delete and replay; other processes' writes
 * found by the sweep, one lease per webhook.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import { InProcessNotifier } from "../../src/live/notifier.ts";
import { messageId } from "../../src/model/webhook.ts";
import { loadConfig } from "../../src/runtime/config.ts";
import { PrometheusMetrics } from "../../src/runtime/prometheus.ts";
import { serverWebhooks } from "../../src/runtime/server-webhooks.ts";
import { wire } from "../../src/runtime/wire.ts";
import { deliverOnce, type DeliveryFetch } from "../../src/webhooks/deliver.ts";
import { nodeDeliveryFetch } from "../../src/runtime/node-delivery-fetch.ts";
import { BlobLeases, isHeld, leaseKey } from "../../src/webhooks/lease.ts";
import { BlobWebhookRegistry } from "../../src/webhooks/registry.ts";
import { readJsonResult } from "../support/http.ts";
import { parseExposition } from "../support/prometheus.ts";
import { waitFor } from "../support/wait.ts";
import { expectSentInOrder, WebhookReceiver } from "../support/webhook-receiver.ts";

const TENANT = "local";

/**
 * The attempts' HTTP client the nodes of a suite use: the global fetch (Deno's server and
 * the default), or the Node server's node:http client. The delivery suite runs with each.
 */
let deliveryFetch: DeliveryFetch | undefined;

type Node = Awaited<ReturnType<typeof startNode>>;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "artifacts-webhooks-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function receiver(): Promise<WebhookReceiver> {
  const started = await WebhookReceiver.start();
  cleanups.push(() => started.close());
  return started;
}

/** A clock the tests can move (the retry window); the signatures follow it. */
function clock() {
  let offset = 0;
  return {
    now: () => Date.now() + offset,
    advance: (ms: number) => void (offset += ms),
    reset: () => void (offset = 0),
  };
}

/**
 * One "process": the app wired as the Node server would be, with the dispatcher, on the
 * data folder `dir` (several nodes on one folder are several processes on one store).
 */
function startNode(
  dir: string,
  options: { holder?: string; now?: () => number; metrics?: PrometheusMetrics; sweepMs?: number } = {},
) {
  const config = loadConfig({ DATA_DIR: dir, WEBHOOK_ALLOW_HTTP_LOOPBACK: "1", WEBHOOK_RETRY_BASE_MS: "10" });
  const webhooks = serverWebhooks({
    ...(options.metrics ? { metrics: options.metrics } : {}),
    tuning: {
      sweepMs: options.sweepMs ?? 50,
      // Renewed every 2 s: only an event loop stalled for 4 s would let the other process in.
      leaseMs: 6000,
      // Long enough that no answer of the receiver on loopback times out on a busy machine.
      attemptTimeoutMs: 2000,
      cursorFlushMs: 50,
      ...(deliveryFetch ? { fetch: deliveryFetch } : {}),
      ...(options.holder ? { holder: options.holder } : {}),
      ...(options.now ? { now: options.now } : {}),
    },
  });
  const blobStore = new FsBlobStore(join(dir, "rollouts"));
  const wired = wire({
    config,
    blobStore,
    connectLibsql: () => createClient({ url: config.libsqlUrl, timeout: 5000, concurrency: 1 }),
    notifier: webhooks.notifier(new InProcessNotifier()),
    admission: null,
    ...(options.metrics ? { metrics: options.metrics } : {}),
    webhooks: {
      resolve: (hostname) => Promise.reject(new Error(`no DNS in tests (${hostname})`)),
      deliveries: webhooks.deliveries,
    },
  });
  webhooks.start();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await webhooks.stop();
    await wired.service.idle();
    wired.cache.close();
  };
  cleanups.push(stop);
  const request = async (method: string, path: string, body?: unknown) => {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { "content-type": "application/json" };
    }
    return readJsonResult(await wired.app.request(path, init));
  };
  const registry = new BlobWebhookRegistry(blobStore);
  return { ...wired, config, blobStore, registry, request, stop, webhooks };
}

/** Creates a webhook delivering to `path` of `to`, and tells the receiver its secret. */
async function subscribe(node: Node, to: WebhookReceiver, path: string, extra: Record<string, unknown> = {}) {
  const created = await node.request("POST", "/v1/webhooks", { url: to.url(path), ...extra });
  expect(created.status, created.text).toBe(201);
  to.secrets.set(path, created.json.webhook.secret);
  return created.json.webhook as { id: string; secret: string };
}

async function write(node: Node, threadId: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await node.request("POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "note", payload: { i } });
    expect(r.status, r.text).toBe(201);
  }
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

async function webhookOf(node: Node, id: string): Promise<any> {
  const r = await node.request("GET", `/v1/webhooks/${id}`);
  expect(r.status, r.text).toBe(200);
  return r.json.webhook;
}

describe.each([
  ["the global fetch", undefined],
  ["the Node server's node:http client", nodeDeliveryFetch],
])("webhook delivery, through %s", (_name, client) => {
  beforeAll(() => void (deliveryFetch = client));
  afterAll(() => void (deliveryFetch = undefined));

  it("delivers every event once, in seq order per thread, signed, as {type, timestamp, data} with the SSE data", async () => {
    const node = startNode(dataDir());
    const to = await receiver();
    const hook = await subscribe(node, to, "/all");

    await Promise.all([write(node, "a", 12), write(node, "b", 12), write(node, "c", 5)]);
    // c's events, read as the SSE stream sends them, before its delete hides them.
    const sseOfC = await node.service.readEvents(TENANT, "c", 0, 100);
    const deleted = await node.request("DELETE", "/v1/threads/c");
    expect(deleted.status, deleted.text).toBe(200);

    const expected = { a: range(1, 12), b: range(1, 12), c: range(1, 6) };
    await waitFor(
      "every event acknowledged",
      () => Object.entries(expected).every(([threadId, seqs]) => to.acked("/all", threadId).length >= seqs.length),
    );

    const sse = {
      a: await node.service.readEvents(TENANT, "a", 0, 100),
      b: await node.service.readEvents(TENANT, "b", 0, 100),
      c: [...sseOfC, ...(await node.service.readEvents(TENANT, "c", 5, 100))],
    };
    for (const [threadId, seqs] of Object.entries(expected)) {
      const requests = to.to("/all", threadId);
      // Exactly once here (nothing failed), in order.
      expect(requests.map((r) => r.seq), threadId).toEqual(seqs);
      for (const [i, request] of requests.entries()) {
        expect(request.verified, request.verifyError).toBe(true);
        expect(request.headers["content-type"]).toBe("application/json");
        expect(request.id).toBe(await messageId(TENANT, threadId, request.seq));
        expect(Object.keys(request.message)).toEqual(["type", "timestamp", "data"]);
        expect(Number.isNaN(Date.parse(request.message.timestamp))).toBe(false);
        expect(request.message.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
        const event = sse[threadId as keyof typeof sse][i];
        expect(event?.seq).toBe(request.seq);
        expect(request.message.data).toEqual(JSON.parse(event?.data ?? "null"));
        expect(request.message.type).toBe(event?.event === "thread-deleted" ? "thread.deleted" : "artifact.updated");
      }
    }
    expect(to.to("/all", "c").at(-1)?.message.type).toBe("thread.deleted");

    // The cursors are durable once the lanes are idle; the deliveries list what was sent.
    await waitFor("cursors written", async () =>
      (await node.registry.cursor(TENANT, hook.id, "a")) === 12 &&
      (await node.registry.cursor(TENANT, hook.id, "b")) === 12 &&
      (await node.registry.cursor(TENANT, hook.id, "c")) === 6);
    const recent = await node.request("GET", `/v1/webhooks/${hook.id}/deliveries?limit=5`);
    expect(recent.status, recent.text).toBe(200);
    expect(recent.json.deliveries).toHaveLength(5);
    expect(recent.json.deliveries[0]).toMatchObject({ outcome: "delivered", responseStatus: 200, attempt: 1 });
  });

  it("retries a 500, a timeout and a redirect (never followed) with the same message, keeps the order, reads a bounded answer", async () => {
    const metrics = new PrometheusMetrics();
    const node = startNode(dataDir(), { metrics });
    const to = await receiver();
    const hook = await subscribe(node, to, "/hook");
    to.respond = (request, attempt) => {
      if (request.threadId === "t" && request.seq === 2) {
        if (attempt === 1) return { status: 500 };
        if (attempt === 2) return "hang";
        if (attempt === 3) return { status: 302, headers: { location: to.url("/elsewhere") } };
      }
      // A 200 whose body never ends: the dispatcher reads 64 KiB of it and hangs up.
      if (request.threadId === "t" && request.seq === 3) return "endless";
      return { status: request.verified ? 200 : 400 };
    };
    await Promise.all([write(node, "t", 4), write(node, "u", 3)]);
    await waitFor(
      "t and u delivered",
      () => to.acked("/hook", "t").length === 4 && to.acked("/hook", "u").length === 3,
    );

    const t = to.to("/hook", "t");
    expect(t.map((r) => r.seq)).toEqual([1, 2, 2, 2, 2, 3, 4]);
    expect(t.map((r) => r.status)).toEqual([200, 500, 0, 302, 200, 200, 200]);
    expectSentInOrder(t, range(1, 4));
    const retries = t.filter((r) => r.seq === 2);
    expect(new Set(retries.map((r) => r.id)).size).toBe(1);
    expect(new Set(retries.map((r) => r.body)).size).toBe(1);
    expect(retries.every((r) => r.verified)).toBe(true);
    // One thread's failures hold up no other thread.
    expect(to.to("/hook", "u").map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(to.strays).toEqual([]);

    const recent = await node.request("GET", `/v1/webhooks/${hook.id}/deliveries?limit=100`);
    const attempts = (recent.json.deliveries as any[]).filter((d) => d.threadId === "t" && d.seq === 2).reverse();
    expect(attempts.map((d) => [d.attempt, d.outcome, d.responseStatus ?? d.error])).toEqual([
      [1, "failed", 500],
      [2, "failed", "timeout"],
      [3, "failed", 302],
      [4, "delivered", 200],
    ]);
    expect(attempts.slice(0, 3).every((d) => typeof d.nextAttemptAt === "string")).toBe(true);
    expect(attempts[3].nextAttemptAt).toBeUndefined();

    const exposition = parseExposition((await metrics.render()).body);
    expect(exposition.value("artifacts_webhook_deliveries_total", { outcome: "delivered" })).toBe(7);
    expect(exposition.value("artifacts_webhook_deliveries_total", { outcome: "failed" })).toBe(3);
    expect(exposition.value("artifacts_webhook_deliveries_total", { outcome: "gone" })).toBe(0);
    expect(exposition.value("artifacts_webhook_retries_total")).toBe(3);
    expect(exposition.value("artifacts_webhook_delivery_duration_seconds_count", { outcome: "failed" })).toBe(3);
  });

  it("410 Gone pauses the webhook; later events wait; once active again it resumes in order", async () => {
    const node = startNode(dataDir());
    const to = await receiver();
    const hook = await subscribe(node, to, "/gone");
    await subscribe(node, to, "/probe");
    let gone = true;
    to.respond = (request) => {
      if (request.path === "/gone" && request.seq === 2 && gone) return { status: 410 };
      return { status: request.verified ? 200 : 400 };
    };
    await write(node, "t", 2);
    await waitFor("paused", async () => (await webhookOf(node, hook.id)).status === "paused");
    expect((await webhookOf(node, hook.id)).statusReason).toMatch(/410/);

    await write(node, "t", 2);
    // The probe, an active webhook on the same thread, has all four: the paused one had every chance.
    await waitFor("the probe has seq 4", () => to.acked("/probe", "t").includes(4));
    expect(to.to("/gone", "t").map((r) => [r.seq, r.status])).toEqual([[1, 200], [2, 410]]);

    gone = false;
    const resumed = await node.request("PATCH", `/v1/webhooks/${hook.id}`, { status: "active" });
    expect(resumed.status, resumed.text).toBe(200);
    await waitFor("caught up", () => to.acked("/gone", "t").includes(4));
    const requests = to.to("/gone", "t");
    expect(requests.map((r) => r.seq)).toEqual([1, 2, 2, 3, 4]);
    expectSentInOrder(requests, range(1, 4));
  });

  it("retries for WEBHOOK_RETRY_HOURS, then turns failing; later events wait; resumed, it starts where it stopped", async () => {
    const time = clock();
    const metrics = new PrometheusMetrics();
    const node = startNode(dataDir(), { now: time.now, metrics });
    const to = await receiver();
    const hook = await subscribe(node, to, "/down");
    let down = true;
    to.respond = (request) => (down ? { status: 503 } : { status: request.verified ? 200 : 400 });

    await write(node, "t", 2);
    await waitFor("two failed attempts", () => to.to("/down", "t").length >= 2);
    // Both events wait, the oldest since it became known.
    await waitFor("the backlog gauge at 2", async () => {
      const exposition = parseExposition((await metrics.render()).body);
      return exposition.value("artifacts_webhook_backlog_events") === 2 &&
        (exposition.value("artifacts_webhook_oldest_undelivered_seconds") ?? 0) > 0;
    });
    // The next attempt comes a full retry window after the first failure.
    time.advance(node.config.webhookRetryMs);
    await waitFor("failing", async () => (await webhookOf(node, hook.id)).status === "failing");
    const view = await webhookOf(node, hook.id);
    expect(view.statusReason).toMatch(/no 2xx for event 1 of thread t/);
    expect(to.to("/down", "t").every((r) => r.seq === 1)).toBe(true);
    expect(await node.registry.cursor(TENANT, hook.id, "t")).toBe(0);

    time.reset();
    down = false;
    const resumed = await node.request("PATCH", `/v1/webhooks/${hook.id}`, { status: "active" });
    expect(resumed.status, resumed.text).toBe(200);
    await waitFor("caught up", () => to.acked("/down", "t").includes(2));
    expect(to.acked("/down", "t")).toEqual([1, 2]);
    expectSentInOrder(to.to("/down", "t"), [1, 2]);
  });

  it("a deleted webhook delivers nothing more (and leaves no cursor or lease behind)", async () => {
    const node = startNode(dataDir());
    const to = await receiver();
    const hook = await subscribe(node, to, "/deleted");
    await subscribe(node, to, "/probe");
    await write(node, "t", 1);
    await waitFor(
      "seq 1 delivered to both",
      () => to.acked("/deleted", "t").includes(1) && to.acked("/probe", "t").includes(1),
    );
    await waitFor("its cursor written", async () => (await node.registry.cursor(TENANT, hook.id, "t")) === 1);

    const deleted = await node.request("DELETE", `/v1/webhooks/${hook.id}`);
    expect(deleted.status, deleted.text).toBe(204);
    await write(node, "t", 2);
    await waitFor("the probe has seq 3", () => to.acked("/probe", "t").includes(3));
    expect(to.to("/deleted", "t").map((r) => r.seq)).toEqual([1]);
    await waitFor("its lease removed", async () => (await node.blobStore.get(leaseKey(TENANT, hook.id))) === null);
    expect(await node.blobStore.list(`tenants/${TENANT}/webhooks/${hook.id}/`)).toEqual([]);
  });

  it("replay delivers a thread's events after `since` again, in order, with the same message ids", async () => {
    const node = startNode(dataDir());
    const to = await receiver();
    const hook = await subscribe(node, to, "/replay");
    await write(node, "t", 5);
    await waitFor("delivered", () => to.acked("/replay", "t").length === 5);
    await waitFor("its cursor at 5", async () => (await node.registry.cursor(TENANT, hook.id, "t")) === 5);
    const first = to.to("/replay", "t");

    // Never forward: a replay past the cursor would skip events, so it changes nothing.
    const ahead = await node.request("POST", `/v1/webhooks/${hook.id}/replay`, { threadId: "t", since: 9 });
    expect(ahead.status, ahead.text).toBe(202);
    expect(await node.registry.cursor(TENANT, hook.id, "t")).toBe(5);
    const replay = await node.request("POST", `/v1/webhooks/${hook.id}/replay`, { threadId: "t", since: 2 });
    expect(replay.status, replay.text).toBe(202);
    await waitFor("delivered again", () => to.acked("/replay", "t").length === 8);
    const again = to.to("/replay", "t").slice(5);
    expect(again.map((r) => r.seq)).toEqual([3, 4, 5]);
    expect(again.map((r) => r.id)).toEqual(first.slice(2).map((r) => r.id));
    expect(again.every((r) => r.verified)).toBe(true);
    await waitFor("the cursor back at 5", async () => (await node.registry.cursor(TENANT, hook.id, "t")) === 5);
  });

  it("follows only its threads and its events", async () => {
    const node = startNode(dataDir());
    const to = await receiver();
    await subscribe(node, to, "/x", { threads: ["x"] });
    await subscribe(node, to, "/deletes", { events: ["thread-deleted"] });
    await subscribe(node, to, "/probe");
    await Promise.all([write(node, "x", 3), write(node, "y", 3)]);
    for (const threadId of ["y", "x"]) {
      const r = await node.request("DELETE", `/v1/threads/${threadId}`);
      expect(r.status, r.text).toBe(200);
    }
    await waitFor(
      "the probe has both deletes",
      () => to.acked("/probe", "x").includes(4) && to.acked("/probe", "y").includes(4),
    );
    await waitFor("the others too", () => to.acked("/x", "x").includes(4) && to.acked("/deletes", "x").includes(4));
    expect(to.to("/x").map((r) => [r.threadId, r.seq])).toEqual([["x", 1], ["x", 2], ["x", 3], ["x", 4]]);
    expect(to.to("/deletes").map((r) => [r.threadId, r.seq, r.message.type]).sort()).toEqual([
      ["x", 4, "thread.deleted"],
      ["y", 4, "thread.deleted"],
    ]);
  });

  it("two processes on one store: one delivers (the lease), finding the other's writes by its sweep; the other takes over when it stops", async () => {
    const dir = dataDir();
    const one = startNode(dir, { holder: "one" });
    const two = startNode(dir, { holder: "two" });
    const to = await receiver();
    const every = await subscribe(one, to, "/every");
    await subscribe(one, to, "/listed", { threads: ["p", "q"] });
    two.webhooks.dispatcher?.changed(TENANT, every.id);

    await Promise.all([write(one, "p", 4), write(two, "q", 4), write(two, "r", 4)]);
    await waitFor(
      "all delivered",
      () =>
        ["p", "q", "r"].every((threadId) => to.acked("/every", threadId).length >= 4) &&
        ["p", "q"].every((threadId) => to.acked("/listed", threadId).length >= 4),
    );
    // Exactly once: only the lease holder sent.
    const ids = to.received.map((r) => `${r.path} ${r.id}`);
    expect(new Set(ids).size).toBe(ids.length);
    expect(to.to("/listed", "r")).toEqual([]);
    const holderOf = async () =>
      JSON.parse((await one.blobStore.get(leaseKey(TENANT, every.id))) ?? "{}").holder as string | undefined;
    const holder = await holderOf();
    expect(["one", "two"]).toContain(holder);

    // The holder stops (its leases handed back): the other one delivers from the cursors.
    const [gone, stays] = holder === "one" ? [one, two] : [two, one];
    await waitFor(
      "cursors of the every-thread webhook written",
      async () =>
        (await Promise.all(["p", "q", "r"].map((t) => one.registry.cursor(TENANT, every.id, t)))).every((s) => s === 4),
    );
    await gone.stop();
    await write(stays, "p", 2);
    await write(stays, "q", 2);
    await waitFor(
      "delivered by the other",
      () =>
        to.acked("/every", "p").includes(6) && to.acked("/every", "q").includes(6) &&
        to.acked("/listed", "q").includes(6),
    );
    const all = to.received.map((r) => `${r.path} ${r.id}`);
    expect(new Set(all).size).toBe(all.length);
    for (const threadId of ["p", "q"]) expect(to.acked("/every", threadId)).toEqual(range(1, 6));
    expect(await holderOf()).toBe(holder === "one" ? "two" : "one");
  });
});

describe("a thread another process made and deleted, with no hint", () => {
  it("reaches an every-thread webhook by its sweep, as its thread.deleted event", async () => {
    const dir = dataDir();
    // One's sweeps wait for the test (an hour apart): it learns of "gone" only when asked below.
    const one = startNode(dir, { holder: "one", sweepMs: 3_600_000 });
    const two = startNode(dir, { holder: "two" });
    const to = await receiver();
    const every = await subscribe(one, to, "/every");
    await waitFor(
      "one holds the webhook",
      async () => JSON.parse((await one.blobStore.get(leaseKey(TENANT, every.id))) ?? "{}").holder === "one",
    );
    await write(two, "gone", 2);
    const deleted = await two.request("DELETE", "/v1/threads/gone");
    expect(deleted.status, deleted.text).toBe(200);
    // One looks: the thread is listed at its tombstone, and its delete is delivered.
    one.webhooks.dispatcher?.changed(TENANT, every.id);
    await waitFor(
      "thread.deleted delivered",
      () => to.to("/every", "gone").some((r) => r.message.type === "thread.deleted"),
    );
    const got = to.to("/every", "gone");
    expect(got.at(-1)).toMatchObject({ seq: 3, message: { type: "thread.deleted" } });
  });
});

describe("one delivery attempt", () => {
  it("through the Node server's client: a closed port is a network failure; 204 and 304 are answers as any other", async () => {
    const target = { url: "", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" };
    const message = { id: "msg_1", type: "artifact.updated" as const, body: "{}" };
    const options = { checkUrl: () => Promise.resolve({ ok: true as const }), fetch: nodeDeliveryFetch };
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const refused = await deliverOnce({ ...target, url: `http://127.0.0.1:${port}/in` }, message, options);
    expect(refused).toMatchObject({ outcome: "failed", error: "network" });

    let status = 204;
    const bodies: string[] = [];
    const server = createServer((request, response) => {
      let body = "";
      request.on("data", (chunk) => (body += chunk));
      request.on("end", () => {
        bodies.push(body);
        response.writeHead(status).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/in`;
    expect(await deliverOnce({ ...target, url }, message, options)).toMatchObject({
      outcome: "delivered",
      status: 204,
    });
    status = 304;
    expect(await deliverOnce({ ...target, url }, message, options)).toMatchObject({ outcome: "failed", status: 304 });
    expect(bodies).toEqual(["{}", "{}"]);
  });

  it("asks the URL check first: a refused address is a failure, and nothing is sent", async () => {
    let sent = 0;
    const result = await deliverOnce(
      { url: "https://hooks.example.com/in", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" },
      { id: "msg_1", type: "artifact.updated", body: "{}" },
      {
        checkUrl: () => Promise.resolve({ ok: false, code: "forbidden_address", detail: "resolves to 10.0.0.1" }),
        fetch: () => {
          sent++;
          return Promise.resolve(new Response(null, { status: 200 }));
        },
      },
    );
    expect(result).toMatchObject({ outcome: "failed", error: "refused_address" });
    expect(sent).toBe(0);
  });
});

describe("webhook leases", () => {
  it("one holder at a time; an expired lease is taken over, with its horizon; a loser finds out at renewal", async () => {
    const store = new MemoryBlobStore();
    let now = 1_000_000;
    const a = new BlobLeases(store, { holder: "a", leaseMs: 30_000, now: () => now });
    const b = new BlobLeases(store, { holder: "b", leaseMs: 30_000, now: () => now });
    const held = await a.acquire(TENANT, "wh_1");
    if (!isHeld(held)) throw new Error("a did not get a free lease");
    expect(held.sweptFrom).toBeUndefined();
    const taken = await b.acquire(TENANT, "wh_1");
    expect(isHeld(taken) ? "held" : taken.until).toBe(now + 10_000);

    expect(await held.renew(42)).toBe(true);
    now += 31_000;
    // Expired: b takes it over and gets what a left.
    const stolen = await b.acquire(TENANT, "wh_1");
    if (!isHeld(stolen)) throw new Error("b did not take an expired lease over");
    expect(stolen.sweptFrom).toBe(42);
    expect(await held.renew(43)).toBe(false);
    // a's release of what is no longer its own changes nothing.
    await held.release(44);
    expect(JSON.parse((await store.get(leaseKey(TENANT, "wh_1"))) ?? "{}").holder).toBe("b");

    // Handed back: written expired, taken at once by the next asker, horizon kept.
    await stolen.release(7);
    const next = await a.acquire(TENANT, "wh_1");
    if (!isHeld(next)) throw new Error("a did not get a released lease");
    expect(next.sweptFrom).toBe(7);
    // Forced (a replay asked here): taken from a live holder, who finds out at renewal.
    const forced = await b.acquire(TENANT, "wh_1", { force: true });
    expect(isHeld(forced)).toBe(true);
    expect(await next.renew(undefined)).toBe(false);
  });
});
