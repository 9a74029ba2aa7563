/**
 * The Workers sequencer (a Durable Object per thread), in workerd (Miniflare 4), with
 * the rollout on S3 (the test S3 server) and the cache on libSQL over HTTP (the Hrana
 * test server), each behind a proxy that counts requests and can fail them:
 * - writes of one thread are grouped by the object: fewer commits than creates, no
 *   cache read before a write, one libSQL batch per group;
 * - streams live on pushed events: an event arrives with the poll a minute away, and an
 *   idle stream makes no store request;
 * - a Worker without the binding racing the object on one thread: every acknowledged
 *   write is there, seqs contiguous;
 * - faults: S3 failing mid-burst, libSQL down, the runtime restarted in the middle of a
 *   burst (every object evicted), streams across that restart: nothing acknowledged
 *   lost, seqs contiguous, every stream complete (each event once).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventSource } from "eventsource";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { commitOf, patchesOf } from "../../src/model/patch.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { type FaultProxy, startFaultProxy } from "../support/fault-proxy.ts";
import { type HranaServer, startHranaServer } from "../support/hrana-server.ts";
import { freePort, newThreadId } from "../support/live-server.ts";
import {
  S3_ACCESS_KEY_ID,
  S3_REGION,
  S3_SECRET_ACCESS_KEY,
  type S3rverHarness,
  startS3rver,
} from "../support/s3rver.ts";
import { SseConnection, waitUntil } from "../support/sse.ts";
import { startWorker, type WorkerServer } from "../support/worker-process.ts";

const TOKEN = "sequencer-token";
const AUTH = { authorization: `Bearer ${TOKEN}` };

let s3: S3rverHarness;
let s3Proxy: FaultProxy;
let dir: string;
let hrana: HranaServer;
let libsqlProxy: FaultProxy;
let bucket: string;
const workers: WorkerServer[] = [];

beforeAll(async () => {
  s3 = await startS3rver();
  s3Proxy = await startFaultProxy(s3.endpoint);
  dir = mkdtempSync(join(tmpdir(), "artifacts-sequencer-"));
  hrana = await startHranaServer({ path: join(dir, "cache.db") });
  libsqlProxy = await startFaultProxy(hrana.url);
  bucket = await s3.createBucket();
});
afterEach(async () => {
  s3Proxy.failing = false;
  libsqlProxy.failing = false;
  for (const worker of workers.splice(0)) await worker.stop();
});
afterAll(async () => {
  await libsqlProxy?.close();
  await hrana?.close();
  await s3Proxy?.close();
  await s3?.close();
  rmSync(dir, { recursive: true, force: true });
});

function vars(extra: Record<string, string> = {}): Record<string, string> {
  return {
    BLOB_STORE: `s3://${bucket}?endpoint=${encodeURIComponent(s3Proxy.endpoint)}&region=${S3_REGION}`,
    AWS_ACCESS_KEY_ID: S3_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: S3_SECRET_ACCESS_KEY,
    LIBSQL_URL: libsqlProxy.endpoint,
    AUTH_TOKENS: `${TOKEN}:acme`,
    ...extra,
  };
}

async function worker(
  options: Parameters<typeof startWorker>[1] = {},
  extra: Record<string, string> = {},
): Promise<WorkerServer> {
  const started = await startWorker(vars(extra), options);
  workers.push(started);
  return started;
}

async function create(base: string, threadId: string, payload: unknown): Promise<{ status: number; seq?: number }> {
  const response = await fetch(`${base}/v1/threads/${threadId}/artifacts`, {
    method: "POST",
    headers: { ...AUTH, "content-type": "application/json" },
    body: JSON.stringify({ artifactType: "note", payload }),
  }).catch(() => null);
  if (!response) return { status: 0 };
  const body = (await response.json().catch(() => ({}))) as { thread?: { rolloutSeq: number } };
  return { status: response.status, ...(body.thread ? { seq: body.thread.rolloutSeq } : {}) };
}

/** The thread's patches as S3 holds them, read through the real S3 adapter. */
async function committed(threadId: string) {
  const rollout = new Rollout(s3.store(bucket));
  const commits = await rollout.listCommits("acme", threadId, 0);
  return { commits, seqs: patchesOf(commits).map((p) => p.seq) };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe("the sequencer groups a thread's writes", () => {
  it("32 concurrent creates: each its own seq, fewer commits than creates, no cache read before a write", async () => {
    const w = await worker();
    const threadId = newThreadId("grouped");
    await create(w.url, threadId, "first");
    libsqlProxy.resetCount();
    s3Proxy.resetCount();
    const results = await Promise.all(Array.from({ length: 32 }, (_, i) => create(w.url, threadId, i)));
    expect(results.map((r) => r.status)).toEqual(Array(32).fill(201));
    expect(results.map((r) => r.seq).sort((a, b) => a! - b!)).toEqual(range(33).slice(1));
    const { commits, seqs } = await committed(threadId);
    expect(seqs).toEqual(range(33));
    expect(commits.length).toBeLessThan(33);
    // Per group: one commit PUT and one libSQL batch; nothing read before deciding.
    expect(libsqlProxy.count).toBeLessThanOrEqual(commits.length - 1);
    expect(s3Proxy.count).toBeLessThan(32);
  });
});

describe("streams live on pushed events", () => {
  it("an event arrives with the safety poll a minute away, and an idle stream makes no store request", async () => {
    const w = await worker({}, { SSE_PING_MS: "100" });
    const threadId = newThreadId("pushed");
    const stream = await SseConnection.open(`${w.url}/v1/threads/${threadId}/events`, AUTH);
    try {
      // Two pings: the stream caught up (an empty log) and waits on its feed.
      await stream.until((c) => c.parser.comments.filter((x) => x === "ping").length >= 2, "two pings");
      expect((await create(w.url, threadId, "pushed")).status).toBe(201);
      await stream.untilSeq(1);
      expect(stream.events[0]?.event.artifact.payload).toBe("pushed");
      // Idle now: five more pings go by without a single store request.
      const pings = stream.parser.comments.length;
      libsqlProxy.resetCount();
      s3Proxy.resetCount();
      await stream.until((c) => c.parser.comments.length >= pings + 5, "five more pings");
      expect({ libsql: libsqlProxy.count, s3: s3Proxy.count }).toEqual({ libsql: 0, s3: 0 });
    } finally {
      await stream.close();
    }
  });
});

describe("a Worker without the binding racing the sequencer on one thread", () => {
  it("every acknowledged write is in the rollout once, seqs contiguous, and both read the same thread", async () => {
    const withSequencer = await worker();
    const without = await worker({ sequencer: false });
    const threadId = newThreadId("race");
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => create(i % 2 === 0 ? withSequencer.url : without.url, threadId, i)),
    );
    const acked = results.filter((r) => r.status === 201);
    // Contention may cost a 503 (the client retries); never a lost or doubled write.
    for (const r of results) expect([201, 503]).toContain(r.status);
    const { seqs } = await committed(threadId);
    expect(seqs).toEqual(range(seqs.length));
    expect(new Set(acked.map((r) => r.seq)).size).toBe(acked.length);
    for (const r of acked) expect(r.seq).toBeLessThanOrEqual(seqs.length);
    expect(seqs.length).toBeGreaterThanOrEqual(acked.length);
    // The sequencer learns of the other writer's commits: its next write lands at the head.
    const next = await create(withSequencer.url, threadId, "after");
    expect(next).toEqual({ status: 201, seq: seqs.length + 1 });
    for (const w of [withSequencer, without]) {
      const read = await fetch(`${w.url}/v1/threads/${threadId}`, { headers: AUTH });
      expect(((await read.json()) as { thread: { rolloutSeq: number } }).thread.rolloutSeq).toBe(seqs.length + 1);
    }
  });
});

describe("faults", () => {
  it("S3 failing in the middle of a burst: failures are 503s, every 2xx is durable, seqs contiguous", async () => {
    const w = await worker();
    const threadId = newThreadId("s3-fault");
    await create(w.url, threadId, "seed");
    const burst = Array.from({ length: 30 }, (_, i) => i);
    const results = await Promise.all(burst.map(async (i) => {
      if (i === 10) s3Proxy.failing = true;
      if (i === 20) s3Proxy.failing = false;
      return create(w.url, threadId, i);
    }));
    s3Proxy.failing = false;
    for (const r of results) expect([201, 503]).toContain(r.status);
    const { seqs } = await committed(threadId);
    expect(seqs).toEqual(range(seqs.length));
    for (const r of results.filter((r) => r.status === 201)) expect(r.seq).toBeLessThanOrEqual(seqs.length);
    // It goes on at the head.
    expect(await create(w.url, threadId, "after")).toEqual({ status: 201, seq: seqs.length + 1 });
  });

  it("libSQL down: writes go on through the sequencer, reads come from the rollout, and the cache catches up after", async () => {
    const w = await worker();
    const threadId = newThreadId("libsql-down");
    await create(w.url, threadId, 0);
    libsqlProxy.failing = true;
    for (let i = 1; i <= 5; i++) expect((await create(w.url, threadId, i)).status).toBe(201);
    const read = await fetch(`${w.url}/v1/threads/${threadId}`, { headers: AUTH });
    expect(read.headers.get("x-artifacts-source")).toBe("rollout");
    expect(((await read.json()) as { thread: { artifacts: unknown[] } }).thread.artifacts).toHaveLength(6);
    libsqlProxy.failing = false;
    expect((await create(w.url, threadId, 6)).status).toBe(201);
    await waitUntil(async () => {
      const cached = await fetch(`${w.url}/v1/threads/${threadId}?consistency=cache`, { headers: AUTH });
      const body = (await cached.json()) as { thread: { rolloutSeq: number } };
      return cached.headers.get("x-artifacts-source") === "cache" && body.thread.rolloutSeq === 7;
    }, "the cache to hold all 7");
  });

  it("the runtime restarted in the middle of a burst (every object evicted), streams open across it: nothing acknowledged lost, each event once", async () => {
    const port = await freePort();
    const persist = mkdtempSync(join(tmpdir(), "artifacts-sequencer-restart-"));
    let w = await worker({ port, persist });
    const threadId = newThreadId("evicted");
    const url = `${w.url}/v1/threads/${threadId}/events?access_token=${TOKEN}`;
    const received: number[] = [];
    const source = new EventSource(url);
    source.addEventListener("artifact-updated", (event) => received.push(Number(event.lastEventId)));
    try {
      const first = await Promise.all(Array.from({ length: 20 }, (_, i) => create(w.url, threadId, i)));
      const restart = (async () => {
        await w.stop();
        workers.splice(workers.indexOf(w), 1);
        w = await worker({ port, persist });
      })();
      // Writes sent while the runtime goes down and comes back: some fail, none is half done.
      const during = await Promise.all(
        Array.from({ length: 20 }, (_, i) => create(`http://127.0.0.1:${port}`, threadId, 100 + i)),
      );
      await restart;
      const after = await Promise.all(Array.from({ length: 10 }, (_, i) => create(w.url, threadId, 200 + i)));
      const acked = [...first, ...during, ...after].filter((r) => r.status === 201);
      for (const r of after) expect(r.status).toBe(201);
      const { seqs } = await committed(threadId);
      expect(seqs).toEqual(range(seqs.length));
      for (const r of acked) expect(r.seq).toBeLessThanOrEqual(seqs.length);
      expect(new Set(acked.map((r) => r.seq)).size).toBe(acked.length);
      // The stream reconnected (Last-Event-ID) and has every committed event, each once, in order.
      await waitUntil(() => received.length >= seqs.length, `the stream to receive all ${seqs.length} events`, {
        timeoutMs: 30_000,
      });
      expect(received).toEqual(seqs);
    } finally {
      source.close();
      rmSync(persist, { recursive: true, force: true });
    }
  });
});

describe("strong reads with the cache lagging the sequencer", () => {
  it("a read right after a 2xx sees the write while libSQL is slow (the sequencer answers before the cache has it)", async () => {
    const w = await worker();
    const threadId = newThreadId("lagging");
    expect((await create(w.url, threadId, 0)).status).toBe(201);
    libsqlProxy.delayMs = 400;
    try {
      for (let i = 1; i <= 3; i++) {
        const written = await create(w.url, threadId, i);
        expect(written).toEqual({ status: 201, seq: i + 1 });
        const read = await fetch(`${w.url}/v1/threads/${threadId}`, { headers: AUTH });
        const body = (await read.json()) as { thread: { rolloutSeq: number; artifacts: { payload: unknown }[] } };
        expect(body.thread.rolloutSeq).toBe(i + 1);
        expect(body.thread.artifacts.map((a) => a.payload)).toEqual(Array.from({ length: i + 1 }, (_, k) => k));
      }
    } finally {
      libsqlProxy.delayMs = 0;
    }
  });
});

describe("a delete interrupted midway, in workerd", () => {
  it("the runtime dies between the tombstone and the sweep: the next read finishes the delete", async () => {
    const persist = mkdtempSync(join(tmpdir(), "artifacts-sequencer-delete-"));
    const threadId = newThreadId("interrupted");
    const store = s3.store(bucket);
    try {
      const first = await worker({ persist }, { COMPACT_EVERY: "3" });
      for (const i of range(6)) expect((await create(first.url, threadId, i)).status).toBe(201);
      // Killed with the tombstone durable and nothing else done (not marked, not swept, cache not told).
      await first.stop();
      workers.splice(workers.indexOf(first), 1);
      const at = new Date().toISOString();
      expect(await new Rollout(store).append("acme", commitOf([{ seq: 7, threadId, at, op: "delete" }]))).toBe(
        "created",
      );
      const prefix = `tenants/acme/threads/${threadId}/`;
      expect((await store.list(prefix)).length).toBeGreaterThan(3);

      const second = await worker({ persist });
      const read = await fetch(`${second.url}/v1/threads/${threadId}`, { headers: AUTH });
      expect(read.status).toBe(404);
      await read.body?.cancel();
      await waitUntil(async () => (await store.list(prefix)).length === 2, "the sweep the read started");
      expect(await store.list(prefix)).toEqual([`${prefix}commits/000000000007.json`, `${prefix}life.json`]);
      // The next life starts after the tombstone.
      expect(await create(second.url, threadId, "new life")).toEqual({ status: 201, seq: 8 });
    } finally {
      rmSync(persist, { recursive: true, force: true });
    }
  });
});
