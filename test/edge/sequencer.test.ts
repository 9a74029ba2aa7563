/**
 * The Workers sequencer (a Durable Object per thread), in workerd (Miniflare 5), with
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
 *   lost, seqs contiguous, every stream complete (each event once);
 * - deletion keeps every commit key (stubs below the tombstone): a writer deciding on an
 *   old head (the sequencer's head in memory, a Node process's remembered head, nothing
 *   at all after an eviction and a lost cache) loses the race at a stub and goes on in
 *   the current life, on R2 and on S3; a delete interrupted midway is finished by a read;
 * - the sequencer's refusals (a delete, an update) with another writer on the thread:
 *   decided on the thread as it is, not on its state in memory.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventSource } from "eventsource";
import { createClient } from "@libsql/client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { LibsqlCache } from "../../src/cache/libsql.ts";
import type { Artifact } from "../../src/model/artifact.ts";
import { ProblemError } from "../../src/model/errors.ts";
import { type ArtifactPatch, commitOf, patchesOf } from "../../src/model/patch.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { ArtifactService } from "../../src/service/artifact-service.ts";
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
import { SseConnection } from "../support/sse.ts";
import { waitFor } from "../support/wait.ts";
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

/** The thread's seq in the libSQL cache, read past the counting proxy (null: not cached). */
async function cachedSeq(threadId: string): Promise<number | null> {
  const client = createClient({ url: hrana.url });
  try {
    const result = await client.execute({
      sql: "SELECT seq FROM threads WHERE tenant = ? AND thread_id = ?",
      args: ["acme", threadId],
    });
    return result.rows.length === 0 ? null : Number(result.rows[0]!.seq);
  } finally {
    client.close();
  }
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

/** Takes a Worker out of the afterEach list and stops it (the runtime goes down: every object evicted). */
async function stopWorker(w: WorkerServer): Promise<void> {
  workers.splice(workers.indexOf(w), 1);
  await w.stop();
}

/** A Worker whose rollout is its R2 binding (no BLOB_STORE), with the cache at `libsqlUrl`. */
async function r2Worker(libsqlUrl: string, options: Parameters<typeof startWorker>[1] = {}): Promise<WorkerServer> {
  const started = await startWorker({ LIBSQL_URL: libsqlUrl, AUTH_TOKENS: `${TOKEN}:acme` }, options);
  workers.push(started);
  return started;
}

interface Written {
  status: number;
  seq?: number;
  artifact?: Artifact;
}

/** A create through HTTP, with the artifact it acknowledged. */
async function post(base: string, threadId: string, payload: unknown): Promise<Written> {
  const response = await fetch(`${base}/v1/threads/${threadId}/artifacts`, {
    method: "POST",
    headers: { ...AUTH, "content-type": "application/json" },
    body: JSON.stringify({ artifactType: "note", payload }),
  }).catch(() => null);
  if (!response) return { status: 0 };
  const body = (await response.json().catch(() => ({}))) as { artifact?: Artifact; thread?: { rolloutSeq: number } };
  return {
    status: response.status,
    ...(body.thread ? { seq: body.thread.rolloutSeq } : {}),
    ...(body.artifact ? { artifact: body.artifact } : {}),
  };
}

async function deleteThread(base: string, threadId: string): Promise<{ status: number; seq?: number }> {
  const response = await fetch(`${base}/v1/threads/${threadId}`, { method: "DELETE", headers: AUTH }).catch(() => null);
  if (!response) return { status: 0 };
  const body = (await response.json().catch(() => ({}))) as { deleted?: { seq: number } };
  return { status: response.status, ...(body.deleted ? { seq: body.deleted.seq } : {}) };
}

/** A strong read through HTTP: the head and the artifacts. */
async function readThread(
  base: string,
  threadId: string,
): Promise<{ status: number; rolloutSeq?: number; artifacts?: Artifact[] }> {
  const response = await fetch(`${base}/v1/threads/${threadId}`, { headers: AUTH });
  const body = (await response.json().catch(() => ({}))) as { thread?: { rolloutSeq: number; artifacts: Artifact[] } };
  return {
    status: response.status,
    ...(body.thread ? { rolloutSeq: body.thread.rolloutSeq, artifacts: body.thread.artifacts } : {}),
  };
}

/** Read access to a bucket holding the rollout, whatever it is (S3, or a Worker's R2 binding). */
interface Objects {
  keys(prefix: string): Promise<string[]>;
  text(key: string): Promise<string | null>;
}

/** The shared S3 bucket, through the real S3 adapter. */
function s3Objects(): Objects {
  const store = s3.store(bucket);
  return { keys: (prefix) => store.list(prefix), text: (key) => store.get(key) };
}

/** The part of the R2 bucket API the test reads with (workers-types are not a dependency). */
interface R2Reader {
  list(options: { prefix: string; cursor?: string }): Promise<
    { objects: { key: string }[]; truncated: boolean; cursor?: string }
  >;
  get(key: string): Promise<{ text(): Promise<string> } | null>;
}

/** The Worker's R2 binding, read from the test through Miniflare's proxy (only while that runtime is up). */
async function r2Objects(w: WorkerServer): Promise<Objects> {
  const r2 = (await w.mf.getR2Bucket("ROLLOUTS")) as unknown as R2Reader;
  return {
    async keys(prefix) {
      const keys: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await r2.list({ prefix, ...(cursor === undefined ? {} : { cursor }) });
        keys.push(...page.objects.map((o) => o.key));
        cursor = page.truncated ? page.cursor : undefined;
      } while (cursor !== undefined);
      return keys;
    },
    async text(key) {
      const object = await r2.get(key);
      return object === null ? null : await object.text();
    },
  };
}

const threadFolder = (threadId: string) => `tenants/acme/threads/${threadId}/`;

/**
 * The thread's folder, object by object in key order: each commit key as what it holds
 * (`stub 1-2>3`: a stub for seqs 1..2 naming the tombstone at 3; `4-4`: a commit;
 * `3-3 delete`: a tombstone), every other object by its name (`life.json`, `deltas/…`).
 */
async function layout(objects: Objects, threadId: string): Promise<string[]> {
  const prefix = threadFolder(threadId);
  return Promise.all((await objects.keys(prefix)).map(async (key) => {
    const name = key.slice(prefix.length);
    if (!name.startsWith("commits/")) return name;
    const text = await objects.text(key);
    if (text === null) return `${name} (gone)`;
    const stored = JSON.parse(text) as {
      firstSeq: number;
      lastSeq: number;
      tombstone?: number;
      patches?: { op: string }[];
    };
    if (stored.tombstone !== undefined) return `stub ${stored.firstSeq}-${stored.lastSeq}>${stored.tombstone}`;
    return `${stored.firstSeq}-${stored.lastSeq}${stored.patches?.[0]?.op === "delete" ? " delete" : ""}`;
  }));
}

/**
 * Whether nothing of the lives before the tombstone at `tombstone` holds content any
 * more: no commit below it holds patches, no compaction object is left. (True of the
 * design before stubs too, which freed those keys: a wait on it lets a test show that
 * design's hole rather than time out.)
 */
function contentGone(entries: readonly string[], tombstone: number): boolean {
  return entries.every((entry) => {
    const commit = /^(\d+)-\d+/.exec(entry);
    if (commit) return Number(commit[1]) >= tombstone;
    return entry.startsWith("stub ") || entry === "life.json";
  });
}

/** The stubs a swept life leaves when each of its commits held one seq: `stub k-k>T` for k in 1..T-1. */
const stubsBelow = (tombstone: number) => range(tombstone - 1).map((k) => `stub ${k}-${k}>${tombstone}`);

async function lifeOf(objects: Objects, threadId: string): Promise<Record<string, unknown> | null> {
  const text = await objects.text(`${threadFolder(threadId)}life.json`);
  return text === null ? null : (JSON.parse(text) as Record<string, unknown>);
}

/** A Node process on the same S3 bucket with a libSQL file of its own (its cache knows only what it wrote). */
function nodeProcess(): { service: ArtifactService; close: () => Promise<void> } {
  const url = `file:${join(dir, `${newThreadId("node-cache")}.db`)}`;
  const cache = new LibsqlCache({
    connect: () => createClient({ url }),
    local: true,
  });
  const service = new ArtifactService({
    rollout: new Rollout(s3.store(bucket)),
    cache,
    limits: { maxPayloadBytes: 65536, maxArtifactsPerThread: 1000 },
  });
  return {
    service,
    close: async () => {
      await service.idle();
      cache.close();
    },
  };
}

/** A create through the Node process's service, answered like HTTP (a ProblemError as its status). */
async function nodeCreate(service: ArtifactService, threadId: string, payload: unknown): Promise<Written> {
  try {
    const result = await service.writeArtifact("acme", threadId, {
      kind: "create",
      artifactType: "note",
      identityKey: null,
      payload: payload as never,
    });
    return { status: result.created ? 201 : 200, seq: result.thread.rolloutSeq, artifact: result.artifact };
  } catch (error) {
    if (error instanceof ProblemError) return { status: error.status };
    throw error;
  }
}

describe("the sequencer groups a thread's writes", () => {
  it("32 concurrent creates: each its own seq, fewer commits than creates, no cache read before a write", async () => {
    const w = await worker();
    const threadId = newThreadId("grouped");
    await create(w.url, threadId, "first");
    // The first create's cache apply runs after its answer: let it land before counting.
    await waitFor("the first create in the cache", async () => (await cachedSeq(threadId)) === 1);
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
      // The write's cache apply follows its event (in commit order, after the answer): idle
      // means once the cache has it.
      await waitFor("the cache has the write", async () => {
        const read = await fetch(`${w.url}/v1/threads/${threadId}?consistency=cache`, { headers: AUTH });
        return read.status === 200 &&
          ((await read.json()) as { thread: { rolloutSeq: number } }).thread.rolloutSeq === 1;
      });
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
    await waitFor("the cache to hold all 7", async () => {
      const cached = await fetch(`${w.url}/v1/threads/${threadId}?consistency=cache`, { headers: AUTH });
      const body = (await cached.json()) as { thread: { rolloutSeq: number } };
      return cached.headers.get("x-artifacts-source") === "cache" && body.thread.rolloutSeq === 7;
    });
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
      await waitFor(`the stream to receive all ${seqs.length} events`, () => received.length >= seqs.length, {
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

describe("a stream opened while the cache lags the sequencer", () => {
  it("gets what the cache lacks at once (the sequencer's greeting says how far the log goes), not on a ping or the minute's poll", async () => {
    const w = await worker();
    const threadId = newThreadId("stream-lagging");
    // The sequencer's applies fail: the cache has nothing of the thread until it repairs it.
    libsqlProxy.failing = true;
    try {
      expect(await create(w.url, threadId, 0)).toEqual({ status: 201, seq: 1 });
      expect(await create(w.url, threadId, 1)).toEqual({ status: 201, seq: 2 });
    } finally {
      libsqlProxy.failing = false;
    }
    // A slow cache: the stream's first read is still out when the sequencer's greeting
    // (the head, 2) arrives, and comes back empty.
    libsqlProxy.delayMs = 300;
    const started = Date.now();
    const stream = await SseConnection.open(`${w.url}/v1/threads/${threadId}/events?since=0`, AUTH);
    try {
      await stream.untilSeq(2, { timeoutMs: 5000 });
      expect(stream.seqs).toEqual([1, 2]);
      // Long before the first ping (15 s) or safety poll (60 s) could have brought them.
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      libsqlProxy.delayMs = 0;
      await stream.close();
    }
  });
});

describe("a delete interrupted midway, in workerd", () => {
  it("the runtime dies between the tombstone and the sweep: the next read finishes the delete, keeping every key", async () => {
    const persist = mkdtempSync(join(tmpdir(), "artifacts-sequencer-delete-"));
    const threadId = newThreadId("interrupted");
    const store = s3.store(bucket);
    const objects = s3Objects();
    try {
      const first = await worker({ persist }, { COMPACT_EVERY: "3" });
      for (const i of range(6)) expect((await create(first.url, threadId, { secret: i })).status).toBe(201);
      // Compaction objects exist: they are part of what the sweep removes.
      await waitFor(
        "compaction of the first life",
        async () => (await layout(objects, threadId)).includes("compaction.json"),
      );
      // Killed with the tombstone durable and nothing else done (not marked, not swept, cache not told).
      await stopWorker(first);
      const at = new Date().toISOString();
      expect(await new Rollout(store).append("acme", commitOf([{ seq: 7, threadId, at, op: "delete" }]))).toBe(
        "created",
      );

      const second = await worker({ persist });
      const read = await fetch(`${second.url}/v1/threads/${threadId}`, { headers: AUTH });
      expect(read.status).toBe(404);
      await read.body?.cancel();
      await waitFor("the sweep the read started", async () => (await lifeOf(objects, threadId))?.swept === "content");
      // Every commit key stays occupied: six stubs tiling seqs 1..6 up to the tombstone, which stays
      // too; the compaction objects are gone, and no object of the thread holds user data.
      expect(await layout(objects, threadId)).toEqual([...stubsBelow(7), "7-7 delete", "life.json"]);
      expect(await lifeOf(objects, threadId)).toEqual({
        v: 2,
        since: 7,
        deletedAt: expect.any(String),
        swept: "content",
      });
      const texts = await Promise.all((await objects.keys(threadFolder(threadId))).map((key) => objects.text(key)));
      expect(texts.join("\n")).not.toContain("secret");
      // The next life starts after the tombstone.
      expect(await create(second.url, threadId, "new life")).toEqual({ status: 201, seq: 8 });
    } finally {
      rmSync(persist, { recursive: true, force: true });
    }
  });
});

describe("deletion keeps every commit key: a writer on an old head loses the race at a stub", () => {
  it("on R2: create, create, delete, create, then the runtime restarted (every object evicted) on a new empty cache: the next write goes on at 5, nothing acknowledged lost", async () => {
    const persist = mkdtempSync(join(tmpdir(), "artifacts-sequencer-r2-delete-"));
    const threadId = newThreadId("r2-lost-cache");
    const caches: HranaServer[] = [];
    const newCache = async (name: string) => {
      const cache = await startHranaServer({ path: join(dir, `${threadId}-${name}.db`) });
      caches.push(cache);
      return cache;
    };
    try {
      const before = await newCache("before");
      const first = await r2Worker(before.url, { persist });
      expect(await create(first.url, threadId, "a")).toEqual({ status: 201, seq: 1 });
      expect(await create(first.url, threadId, "b")).toEqual({ status: 201, seq: 2 });
      expect(await deleteThread(first.url, threadId)).toEqual({ status: 200, seq: 3 });
      const c = await post(first.url, threadId, "c");
      expect([c.status, c.seq]).toEqual([201, 4]);
      const r2 = await r2Objects(first);
      await waitFor("the sweep of the deleted life on R2", async () => contentGone(await layout(r2, threadId), 3));

      // Every object evicted (the sequencer's head in memory is gone) and the cache lost:
      // nothing but the rollout knows the thread.
      await stopWorker(first);
      await before.close();
      const lost = await newCache("lost");
      const second = await r2Worker(lost.url, { persist });
      const d = await post(second.url, threadId, "d");
      expect([d.status, d.seq]).toEqual([201, 5]);
      expect(await readThread(second.url, threadId)).toEqual({
        status: 200,
        rolloutSeq: 5,
        artifacts: [c.artifact, d.artifact],
      });

      // On R2: the deleted life's keys hold stubs (no user data) tiling 1..2 up to the tombstone.
      const after = await r2Objects(second);
      await waitFor("the sweep recorded", async () => (await lifeOf(after, threadId))?.swept === "content");
      expect(await layout(after, threadId)).toEqual([...stubsBelow(3), "3-3 delete", "4-4", "5-5", "life.json"]);
      expect(await lifeOf(after, threadId)).toEqual({
        v: 2,
        since: 3,
        deletedAt: expect.any(String),
        swept: "content",
      });
    } finally {
      for (const cache of caches) await cache.close();
      rmSync(persist, { recursive: true, force: true });
    }
  });

  it("a Worker without the binding writes past the sequencer and deletes: the sequencer's next write, on its head in memory, lands after the tombstone", async () => {
    const sequenced = await worker();
    const plain = await worker({ sequencer: false });
    const threadId = newThreadId("bypassed");
    const objects = s3Objects();
    // The sequencer holds the thread at 2 in memory...
    expect(await create(sequenced.url, threadId, "a")).toEqual({ status: 201, seq: 1 });
    expect(await create(sequenced.url, threadId, "b")).toEqual({ status: 201, seq: 2 });
    // ...while a Worker without the binding writes past it, then deletes the thread.
    expect(await create(plain.url, threadId, "c")).toEqual({ status: 201, seq: 3 });
    expect(await create(plain.url, threadId, "d")).toEqual({ status: 201, seq: 4 });
    expect(await deleteThread(plain.url, threadId)).toEqual({ status: 200, seq: 5 });
    await waitFor("the deleter's sweep", async () => contentGone(await layout(objects, threadId), 5));

    // The sequencer aims at 3 (its head + 1, never confirmed on the write path): a stub holds
    // that key, so it loses the race, catches up through the tombstone and writes at 6.
    const e = await post(sequenced.url, threadId, "e");
    expect([e.status, e.seq]).toEqual([201, 6]);
    for (const w of [sequenced, plain]) {
      expect(await readThread(w.url, threadId)).toEqual({ status: 200, rolloutSeq: 6, artifacts: [e.artifact] });
    }
    expect((await committed(threadId)).seqs).toEqual([5, 6]);
    expect(await layout(objects, threadId)).toEqual([...stubsBelow(5), "5-5 delete", "6-6", "life.json"]);
  });

  it("the sequencer deletes while a Worker without the binding and a Node process write: each acknowledged write landed before the tombstone (its key now a stub) or after it", async () => {
    const sequenced = await worker();
    const plain = await worker({ sequencer: false });
    const node = nodeProcess();
    const threadId = newThreadId("delete-race");
    const objects = s3Objects();
    try {
      // The Node process writes first and remembers the head it committed (2).
      expect(await nodeCreate(node.service, threadId, "a")).toMatchObject({ status: 201, seq: 1 });
      expect(await nodeCreate(node.service, threadId, "b")).toMatchObject({ status: 201, seq: 2 });
      expect(await create(sequenced.url, threadId, "c")).toEqual({ status: 201, seq: 3 });
      expect(await deleteThread(sequenced.url, threadId)).toEqual({ status: 200, seq: 4 });
      await waitFor("the sequencer's sweep", async () => contentGone(await layout(objects, threadId), 4));
      // The Node process aims at 3 (its remembered head + 1): a stub holds it; it goes on after the tombstone.
      expect(await nodeCreate(node.service, threadId, "d")).toMatchObject({ status: 201, seq: 5 });
      // The sequencer, on the tombstone in memory, loses the race at 5 and writes after it.
      // (Its in-memory state learns of the Node process's write only by a lost race: see
      // the refusal test below for what a refusal decided on it answers.)
      expect(await create(sequenced.url, threadId, "e")).toEqual({ status: 201, seq: 6 });

      // A delete through the sequencer in the middle of a burst from the other two writers.
      const burst = (from: number) =>
        Array.from(
          { length: 8 },
          (_, i) =>
            (from + i) % 2 === 0
              ? nodeCreate(node.service, threadId, `node ${from + i}`)
              : post(plain.url, threadId, `plain ${from + i}`),
        );
      const deleteWhenAnswered = async () => {
        // Contention may cost a 503 (the client retries): never a lost or doubled delete.
        for (let attempt = 0;; attempt++) {
          const deleted = await deleteThread(sequenced.url, threadId);
          if (deleted.status !== 503 || attempt === 4) return deleted;
        }
      };
      const [early, deleted, late] = await Promise.all([
        Promise.all(burst(0)),
        deleteWhenAnswered(),
        Promise.all(burst(8)),
      ]);
      expect(deleted.status).toBe(200);
      const tombstone = deleted.seq as number;
      const written = [...early, ...late];
      for (const w of written) expect([201, 503]).toContain(w.status);
      const acked = written.filter((w) => w.status === 201);
      await waitFor("the second sweep", async () => contentGone(await layout(objects, threadId), tombstone));

      // The rollout from seq 1: the stubs lead to the tombstone, then the new life, contiguous.
      const { commits, seqs } = await committed(threadId);
      const head = seqs[seqs.length - 1] as number;
      expect(seqs).toEqual(range(head).slice(tombstone - 1));
      const newLife = patchesOf(commits).slice(1) as ArtifactPatch[];
      // Seqs unique; each acknowledged write below the tombstone (its key now a stub: the
      // stubs tile 1..tombstone-1) or in the new life as acknowledged.
      expect(new Set(acked.map((w) => w.seq)).size).toBe(acked.length);
      for (const w of acked) {
        expect(w.seq).not.toBe(tombstone);
        if ((w.seq as number) > tombstone) {
          expect(newLife.find((p) => p.seq === w.seq)?.artifact).toEqual(w.artifact);
        }
      }
      const entries = await layout(objects, threadId);
      const stubs = entries.filter((e) => e.startsWith("stub "));
      // Each stub names the tombstone, or an earlier delete's tombstone whose key is a stub in turn leading there.
      const parsed = stubs.map((stub) =>
        (/^stub (\d+)-(\d+)>(\d+)$/.exec(stub) as RegExpExecArray).slice(1).map(Number)
      );
      const namedAt = new Map(parsed.map(([first, , named]) => [first as number, named as number]));
      let next = 1;
      for (const [first, last, named] of parsed) {
        expect(first).toBe(next);
        let leadsTo = named as number;
        while (namedAt.has(leadsTo)) leadsTo = namedAt.get(leadsTo) as number;
        expect(leadsTo).toBe(tombstone);
        next = (last as number) + 1;
      }
      expect(next).toBe(tombstone);
      expect(entries.slice(stubs.length)[0]).toBe(`${tombstone}-${tombstone} delete`);

      // Every reader sees the new life, exactly. The sequencer learns of writes that went
      // around it when it next confirms its head against the rollout (at most a second
      // old: docs/decisions.md, "Workers: the thread's sequencer"), so its strong read may
      // answer the head it confirmed last until then.
      const artifacts = newLife.map((p) => p.artifact);
      await waitFor(
        "the sequencer's head to catch up with the writes around it",
        async () => (await readThread(sequenced.url, threadId)).rolloutSeq === head,
      );
      for (const w of [sequenced, plain]) {
        expect(await readThread(w.url, threadId)).toEqual({ status: 200, rolloutSeq: head, artifacts });
      }
      const { thread } = await node.service.readThread("acme", threadId, { consistency: "strong" });
      expect({ seq: thread.seq, artifacts: JSON.parse(thread.artifactsJson) }).toEqual({ seq: head, artifacts });

      // And every writer goes on at the head.
      expect(await create(sequenced.url, threadId, "after 1")).toEqual({ status: 201, seq: head + 1 });
      expect(await create(plain.url, threadId, "after 2")).toEqual({ status: 201, seq: head + 2 });
      expect(await nodeCreate(node.service, threadId, "after 3")).toMatchObject({ status: 201, seq: head + 3 });
    } finally {
      await node.close();
    }
  });

  it("an evicted sequencer and a lost cache after a delete: the next write continues the current life, and a stream from 0 gets thread-deleted, then the new life", async () => {
    const persist = mkdtempSync(join(tmpdir(), "artifacts-sequencer-evicted-delete-"));
    const threadId = newThreadId("evicted-deleted");
    const objects = s3Objects();
    const caches: HranaServer[] = [];
    const newCache = async (name: string) => {
      const cache = await startHranaServer({ path: join(dir, `${threadId}-${name}.db`) });
      caches.push(cache);
      return cache;
    };
    try {
      const before = await newCache("before");
      const first = await worker({ persist }, { LIBSQL_URL: before.url });
      expect(await create(first.url, threadId, "a")).toEqual({ status: 201, seq: 1 });
      expect(await deleteThread(first.url, threadId)).toEqual({ status: 200, seq: 2 });
      const b = await post(first.url, threadId, "b");
      expect([b.status, b.seq]).toEqual([201, 3]);
      await waitFor("the sweep of the deleted life", async () => contentGone(await layout(objects, threadId), 2));
      await stopWorker(first);
      await before.close();

      const lost = await newCache("lost");
      const second = await worker({ persist }, { LIBSQL_URL: lost.url });
      const c = await post(second.url, threadId, "c");
      expect([c.status, c.seq]).toEqual([201, 4]);
      expect(await readThread(second.url, threadId)).toEqual({
        status: 200,
        rolloutSeq: 4,
        artifacts: [b.artifact, c.artifact],
      });

      // From the start: the delete (its id the tombstone's seq), and the stream ends there...
      const url = `${second.url}/v1/threads/${threadId}/events`;
      const fromStart = await SseConnection.open(`${url}?since=0`, AUTH);
      await fromStart.untilEnded();
      expect(fromStart.parser.events.map((e) => [e.type, e.lastEventId, JSON.parse(e.data)])).toEqual([
        ["thread-deleted", "2", { threadId, seq: 2 }],
      ]);
      // ...resuming after it (Last-Event-ID) gets the new life, then a write made while it is open.
      const resumed = await SseConnection.open(url, { ...AUTH, "last-event-id": fromStart.lastEventId });
      try {
        await resumed.untilSeq(4);
        const d = await post(second.url, threadId, "d");
        expect([d.status, d.seq]).toEqual([201, 5]);
        await resumed.untilSeq(5);
        expect(resumed.parser.events.map((e) => e.type)).toEqual(Array(3).fill("artifact-updated"));
        expect(resumed.events.map((e) => [e.id, e.event.artifact])).toEqual([
          ["3", b.artifact],
          ["4", c.artifact],
          ["5", d.artifact],
        ]);
      } finally {
        await resumed.close();
      }
      expect(await layout(objects, threadId)).toEqual([
        ...stubsBelow(2),
        "2-2 delete",
        "3-3",
        "4-4",
        "5-5",
        "life.json",
      ]);
    } finally {
      for (const cache of caches) await cache.close();
      rmSync(persist, { recursive: true, force: true });
    }
  });
});

/**
 * A refusal appends nothing, so no put-if-absent checks the state it was decided on: in
 * the sequencer (resident mode) that is the state in memory, which learns of another
 * writer's commits only by losing a race. So a group that writes nothing is checked
 * against the rollout (one existence check) whatever it was decided on
 * (src/service/group-writer.ts); when only groups decided on the cache were, these failed.
 */
describe("the sequencer's refusals with another writer on the thread", () => {
  it("a delete through the sequencer of a thread another writer brought back is decided on the thread as it is", async () => {
    const sequenced = await worker();
    const plain = await worker({ sequencer: false });
    // The sequencer holds a deleted thread in memory; a Worker without the binding starts its next life.
    const deletedId = newThreadId("refused-delete");
    expect(await create(sequenced.url, deletedId, "a")).toEqual({ status: 201, seq: 1 });
    expect(await deleteThread(sequenced.url, deletedId)).toEqual({ status: 200, seq: 2 });
    expect(await create(plain.url, deletedId, "b")).toEqual({ status: 201, seq: 3 });
    // The thread lives (every reader says so): deleting it through the sequencer deletes it.
    expect(await readThread(sequenced.url, deletedId)).toMatchObject({ status: 200, rolloutSeq: 3 });
    expect(await deleteThread(sequenced.url, deletedId)).toEqual({ status: 200, seq: 4 });
  });

  it("an update through the sequencer of an artifact another writer added is decided on the thread as it is", async () => {
    const sequenced = await worker();
    const plain = await worker({ sequencer: false });
    // The sequencer holds the thread at 1; a Worker without the binding adds an artifact.
    const updatedId = newThreadId("refused-update");
    expect(await create(sequenced.url, updatedId, "a")).toEqual({ status: 201, seq: 1 });
    const b = await post(plain.url, updatedId, "b");
    expect([b.status, b.seq]).toEqual([201, 2]);
    const update = await fetch(`${sequenced.url}/v1/threads/${updatedId}/artifacts/${b.artifact?.id}`, {
      method: "PATCH",
      headers: { ...AUTH, "content-type": "application/json" },
      body: JSON.stringify({ payload: "b2" }),
    });
    expect(update.status).toBe(200);
    expect(((await update.json()) as { thread: { rolloutSeq: number } }).thread.rolloutSeq).toBe(3);
  });
});
