/**
 * Liveness of the live path: a stream never parks. Every way a feed's refresh loop or a
 * stream's wait could end on the code before this test (each of the first four cases
 * failed there), then the property that ties them together: whatever the interleaving
 * of process starts and restarts, cache outages, dropped hints, slow or hung reads, the
 * first subscriber and the first write, every committed patch reaches every open
 * stream within one poll interval once the faults clear.
 *
 * Time is vitest's fake clock, so "within one poll interval" is logical time, not a
 * wall-clock threshold: the test advances the clock by exactly `POLL_MS` and looks.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { Hono } from "hono";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import type { ArtifactCache } from "../../src/cache/port.ts";
import { LibsqlCache } from "../../src/cache/libsql.ts";
import { type EventReader, FeedHub } from "../../src/live/feed.ts";
import type { LogEvent } from "../../src/model/patch.ts";
import { ThreadFollower } from "../../src/live/follow.ts";
import { InProcessNotifier, type Notifier } from "../../src/live/notifier.ts";
import { streamThreadEvents } from "../../src/http/sse.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { LibsqlFileClient } from "../../src/runtime/libsql-file.ts";
import { ArtifactService } from "../../src/service/artifact-service.ts";

const POLL_MS = 1000;
const READ_TIMEOUT_MS = 5000;
const TENANT = "t";
const THREAD = "th";

const events = (from: number, to: number): LogEvent[] =>
  Array.from({ length: to - from + 1 }, (_, i) => ({ seq: from + i, data: `{"seq":${from + i}}` }));
const never = <T>() => new Promise<T>(() => {});

/** A reader over a log the test appends to, with the faults each case scripts. */
class ScriptedReader implements EventReader {
  readonly log: LogEvent[] = [];
  /** Consumed one per call, first to last; past the end every call answers from the log. */
  readonly script: Array<"fail" | "hang" | "stale"> = [];
  /** Every call fails while set (the store unreachable), after the script. */
  down = false;
  calls = 0;

  append(count: number): void {
    this.log.push(...events(this.log.length + 1, this.log.length + count));
  }

  async head(): Promise<number> {
    const fault = this.#fault();
    if (fault === "fail") throw new Error("store unreachable");
    if (fault === "hang") return never();
    return this.log.length;
  }

  async readEvents(_tenant: string, _threadId: string, afterSeq: number, limit: number): Promise<LogEvent[]> {
    const fault = this.#fault();
    if (fault === "fail") throw new Error("store unreachable");
    if (fault === "hang") return never();
    if (fault === "stale") return [];
    return this.log.slice(afterSeq, afterSeq + limit);
  }

  #fault() {
    this.calls++;
    return this.script.shift() ?? (this.down ? "fail" : undefined);
  }
}

/** A follower of THREAD on `feeds`, collecting what it is given until the feeds drains or `stop`. */
function follow(feeds: FeedHub, reader: EventReader, after = 0) {
  const { feed, release } = feeds.acquire(TENANT, THREAD);
  const follower = new ThreadFollower(feed, reader, { tenant: TENANT, threadId: THREAD, after }, {
    batchSize: feeds.batchSize,
    readTimeoutMs: feeds.readTimeoutMs,
  });
  const seqs: number[] = [];
  let stopped = false;
  const done = (async () => {
    while (!stopped && !feeds.draining) for (const event of await follower.next()) seqs.push(event.seq);
    follower.close();
    release();
  })();
  return {
    seqs,
    get cursor() {
      return follower.cursor;
    },
    stop: async () => {
      stopped = true;
      follower.interrupt();
      await done;
    },
  };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("a feed or stream that could park", () => {
  it("a stream whose first log reads fail stays open and delivers once the log answers", async () => {
    vi.spyOn(console, "warn").mockImplementation(() => {});
    const reader = new ScriptedReader();
    reader.append(2);
    reader.script.push("fail", "fail", "fail");
    const feeds = new FeedHub({ reader, notifier: new InProcessNotifier(), pollMs: POLL_MS });
    const app = new Hono().get(
      "/events",
      (c) =>
        streamThreadEvents(c, { tenant: TENANT, threadId: THREAD, resumeAfter: 0 }, {
          feeds,
          reader,
          options: { retryMs: 2000, pingMs: 15_000, maxLifetimeMs: 60_000 },
        }),
    );
    const response = await app.request("/events");
    const body = response.body!.getReader();
    let text = "";
    const decoder = new TextDecoder();
    const pump = (async () => {
      for (;;) {
        const { done, value } = await body.read();
        if (done) return;
        text += decoder.decode(value);
      }
    })();
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(text).toContain("id: 1\n");
    expect(text).toContain("id: 2\n");
    reader.append(1);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(text).toContain("id: 3\n");
    await body.cancel();
    await pump;
    // The client saw nothing internal: only the retry hint and events.
    expect(text).not.toContain("unreachable");
  });

  it("a feed whose first read never settles is given up on, and the next tick reads again", async () => {
    const reader = new ScriptedReader();
    reader.script.push("hang");
    const feeds = new FeedHub({
      reader,
      notifier: new InProcessNotifier(),
      pollMs: POLL_MS,
      readTimeoutMs: READ_TIMEOUT_MS,
    });
    const stream = follow(feeds, reader);
    reader.append(3);
    await vi.advanceTimersByTimeAsync(READ_TIMEOUT_MS + POLL_MS);
    expect(stream.seqs).toEqual([1, 2, 3]);
    reader.append(1);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(stream.seqs).toEqual([1, 2, 3, 4]);
    await stream.stop();
  });

  it("a stream's own read that never settles is given up on too", async () => {
    const reader = new ScriptedReader();
    reader.append(2);
    // The feed's head read answers; the stream (behind the empty buffer) reads itself and hangs.
    reader.script.push("stale", "hang");
    const feeds = new FeedHub({
      reader,
      notifier: new InProcessNotifier(),
      pollMs: POLL_MS,
      readTimeoutMs: READ_TIMEOUT_MS,
    });
    const stream = follow(feeds, reader);
    await vi.advanceTimersByTimeAsync(READ_TIMEOUT_MS + POLL_MS);
    expect(stream.seqs).toEqual([1, 2]);
    await stream.stop();
  });

  it("a stream whose read comes back empty while the feed is past it reads again on the next tick, not only on the next write", async () => {
    const reader = new ScriptedReader();
    reader.append(3);
    const feeds = new FeedHub({ reader, notifier: new InProcessNotifier(), pollMs: POLL_MS });
    // The feed learns head 3 first; the stream's own read of 1..3 then lags (a store behind).
    const { feed, release } = feeds.acquire(TENANT, THREAD);
    await vi.advanceTimersByTimeAsync(0);
    expect(feed.head).toBe(3);
    reader.script.push("stale");
    const stream = follow(feeds, reader);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(stream.seqs).toEqual([1, 2, 3]);
    await stream.stop();
    release();
  });

  it("a feed whose reads fail for a while keeps polling and delivers when they answer", async () => {
    const reader = new ScriptedReader();
    reader.down = true;
    const feeds = new FeedHub({ reader, notifier: new InProcessNotifier(), pollMs: POLL_MS });
    const stream = follow(feeds, reader);
    reader.append(2);
    await vi.advanceTimersByTimeAsync(5 * POLL_MS);
    expect(stream.seqs).toEqual([]);
    reader.down = false;
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(stream.seqs).toEqual([1, 2]);
    await stream.stop();
    expect(feeds.size).toBe(0);
  });

  it("a feed that loses every hint still delivers on the poll tick", async () => {
    const reader = new ScriptedReader();
    const feeds = new FeedHub({ reader, notifier: new DroppingNotifier(() => true), pollMs: POLL_MS });
    const stream = follow(feeds, reader);
    await vi.advanceTimersByTimeAsync(0);
    reader.append(1);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(stream.seqs).toEqual([1]);
    await stream.stop();
  });
});

/** In-process hints, of which those `drop()` says are lost. */
class DroppingNotifier implements Notifier {
  readonly #inner = new InProcessNotifier();
  readonly #drop: () => boolean;
  constructor(drop: () => boolean) {
    this.#drop = drop;
  }
  notify(tenant: string, threadId: string, seq: number): void {
    if (!this.#drop()) this.#inner.notify(tenant, threadId, seq);
  }
  subscribe(tenant: string, threadId: string, listener: () => void): () => void {
    return this.#inner.subscribe(tenant, threadId, listener);
  }
  close(): void {}
}

/** Every call of `target` fails while `down()` says so (the cache unreachable), as the real client's would. */
function switchable<T extends object>(target: T, down: () => boolean): T {
  return new Proxy(target, {
    get(object, property, receiver) {
      const value = Reflect.get(object, property, receiver);
      if (typeof value !== "function" || property === "close") return value;
      return (
        ...args: unknown[]
      ) => (down() ? Promise.reject(new Error("cache unreachable")) : value.apply(object, args));
    },
  });
}

type Step =
  | { kind: "start" }
  | { kind: "restart"; process: number }
  | { kind: "subscribe"; process: number }
  | { kind: "write"; process: number }
  | { kind: "cache"; process: number; down: boolean }
  | { kind: "hints"; process: number; drop: boolean }
  | { kind: "slowRead"; process: number }
  | { kind: "failRead"; process: number }
  | { kind: "hangRead"; process: number }
  | { kind: "releaseReads" }
  | { kind: "advance"; ms: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 1, arbitrary: fc.constant<Step>({ kind: "start" }) },
  { weight: 1, arbitrary: fc.nat(3).map((process): Step => ({ kind: "restart", process })) },
  { weight: 3, arbitrary: fc.nat(3).map((process): Step => ({ kind: "subscribe", process })) },
  { weight: 5, arbitrary: fc.nat(3).map((process): Step => ({ kind: "write", process })) },
  {
    weight: 2,
    arbitrary: fc.record({ process: fc.nat(3), down: fc.boolean() }).map((r): Step => ({ kind: "cache", ...r })),
  },
  {
    weight: 1,
    arbitrary: fc.record({ process: fc.nat(3), drop: fc.boolean() }).map((r): Step => ({ kind: "hints", ...r })),
  },
  { weight: 1, arbitrary: fc.nat(3).map((process): Step => ({ kind: "slowRead", process })) },
  { weight: 3, arbitrary: fc.nat(3).map((process): Step => ({ kind: "failRead", process })) },
  { weight: 1, arbitrary: fc.nat(3).map((process): Step => ({ kind: "hangRead", process })) },
  { weight: 1, arbitrary: fc.constant<Step>({ kind: "releaseReads" }) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 2500 }).map((ms): Step => ({ kind: "advance", ms })) },
);

/**
 * One "process": its own service, cache client, notifier and feeds over the shared
 * rollout and the shared libSQL file, as two Node servers on one DATA_DIR.
 */
class Process {
  cacheDown = false;
  dropHints = false;
  holdReads = 0;
  /** The next reads of the live path: failed, or never settled. */
  readonly readFaults: Array<"fail" | "hang"> = [];
  readonly held: Array<() => void>;
  readonly service: ArtifactService;
  readonly feeds: FeedHub;
  readonly cache: LibsqlCache;
  readonly reader: EventReader;

  constructor(rollout: Rollout, dbPath: string, held: Array<() => void>, cacheDownAtStart: boolean) {
    this.held = held;
    this.cacheDown = cacheDownAtStart;
    this.cache = new LibsqlCache({ connect: () => new LibsqlFileClient(dbPath, { busyTimeoutMs: 0 }), local: true });
    const notifier = new DroppingNotifier(() => this.dropHints);
    this.service = new ArtifactService({
      rollout,
      cache: switchable<ArtifactCache>(this.cache, () => this.cacheDown),
      limits: { maxPayloadBytes: 65536, maxArtifactsPerThread: 100_000 },
      onCommit: (tenant, commit) => notifier.notify(tenant, commit.threadId, commit.lastSeq),
      repairBehindEveryMs: 1000,
    });
    // A slow read: held until the test releases it (or the feed gives up on it).
    const gate = <T>(read: () => Promise<T>): Promise<T> => {
      const fault = this.readFaults.shift();
      if (fault === "fail") return Promise.reject(new Error("read failed"));
      if (fault === "hang") return new Promise<T>(() => {});
      if (this.holdReads === 0) return read();
      this.holdReads--;
      return new Promise<T>((resolve, reject) => this.held.push(() => read().then(resolve, reject)));
    };
    this.reader = {
      readEvents: (...args) => gate(() => this.service.readEvents(...args)),
      head: (...args) => gate(() => this.service.head(...args)),
    };
    this.feeds = new FeedHub({ reader: this.reader, notifier, pollMs: POLL_MS, readTimeoutMs: READ_TIMEOUT_MS });
  }
}

describe("liveness property", () => {
  it("every committed patch reaches every open stream within one poll interval of the faults clearing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "liveness-"));
    let run = 0;
    vi.spyOn(console, "warn").mockImplementation(() => {});
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(stepArb, { minLength: 1, maxLength: 40 }),
          fc.boolean(),
          async (steps, cacheDownAtStart) => {
            if (process.env.LIVENESS_TRACE) {
              (await import("node:fs")).writeFileSync(
                process.env.LIVENESS_TRACE,
                JSON.stringify({ steps, cacheDownAtStart }),
              );
            }
            const rollout = new Rollout(new MemoryBlobStore());
            const dbPath = join(dir, `cache-${run++}.db`);
            const held: Array<() => void> = [];
            const processes: Process[] = [new Process(rollout, dbPath, held, cacheDownAtStart)];
            const streams: Array<{ process: Process; stream: ReturnType<typeof follow>; from: number }> = [];
            const writes: Promise<unknown>[] = [];
            const pick = (index: number) => processes[index % processes.length] as Process;
            const releaseReads = () => {
              for (const release of held.splice(0)) release();
            };
            for (const step of steps) {
              switch (step.kind) {
                case "start":
                  if (processes.length < 3) processes.push(new Process(rollout, dbPath, held, cacheDownAtStart));
                  break;
                case "restart": {
                  // SIGTERM: its streams end (drain) and reconnect to the new process from
                  // their last seq, as EventSource does with Last-Event-ID.
                  const index = step.process % processes.length;
                  const old = processes[index] as Process;
                  old.feeds.drain();
                  const fresh = new Process(rollout, dbPath, held, cacheDownAtStart);
                  processes[index] = fresh;
                  for (const entry of streams.filter((s) => s.process === old)) {
                    await entry.stream.stop();
                    const resumed = follow(fresh.feeds, fresh.reader, entry.stream.cursor);
                    streams.push({ process: fresh, stream: resumed, from: entry.stream.cursor });
                    resumed.seqs.unshift(...entry.stream.seqs);
                    streams.splice(streams.indexOf(entry), 1);
                  }
                  old.cache.close();
                  break;
                }
                case "subscribe": {
                  const process = pick(step.process);
                  streams.push({ process, stream: follow(process.feeds, process.reader), from: 0 });
                  break;
                }
                case "write":
                  writes.push(
                    pick(step.process).service.write(TENANT, THREAD, {
                      kind: "create",
                      artifactType: "note",
                      identityKey: null,
                      payload: writes.length,
                    }).catch(() => {}),
                  );
                  break;
                case "cache":
                  pick(step.process).cacheDown = step.down;
                  break;
                case "hints":
                  pick(step.process).dropHints = step.drop;
                  break;
                case "slowRead":
                  pick(step.process).holdReads++;
                  break;
                case "failRead":
                  pick(step.process).readFaults.push("fail");
                  break;
                case "hangRead":
                  pick(step.process).readFaults.push("hang");
                  break;
                case "releaseReads":
                  releaseReads();
                  break;
                case "advance":
                  await vi.advanceTimersByTimeAsync(step.ms);
                  break;
              }
            }
            // The faults clear (held reads answer, hung ones are given up on; the cache may
            // stay down: streams then tail the rollout), and every write settles.
            for (const process of processes) {
              process.holdReads = 0;
              process.readFaults.length = 0;
            }
            releaseReads();
            await vi.advanceTimersByTimeAsync(READ_TIMEOUT_MS);
            let settled = false;
            void Promise.all(writes).then(() => (settled = true));
            for (let i = 0; i < 200 && !settled; i++) await vi.advanceTimersByTimeAsync(10);
            expect(settled).toBe(true);
            const head = (await rollout.load(TENANT, THREAD))?.seq ?? 0;

            await vi.advanceTimersByTimeAsync(POLL_MS);
            for (const { stream } of streams) {
              expect(stream.seqs).toEqual(Array.from({ length: head }, (_, i) => i + 1));
            }
            for (const { stream } of streams) await stream.stop();
            for (const process of processes) {
              process.feeds.drain();
              process.cache.close();
            }
          },
        ),
        { numRuns: Number(process.env.LIVENESS_RUNS ?? 150) },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a feed fed by pushes (Workers: the sequencer's events)", () => {
  it("appends what continues the head, drops what it has, restarts its buffer after a gap, and streams behind read the log", async () => {
    const reader = new ScriptedReader();
    reader.append(2);
    const feeds = new FeedHub({ reader, notifier: new DroppingNotifier(() => true), pollMs: 60_000 });
    const stream = follow(feeds, reader);
    await vi.advanceTimersByTimeAsync(0);
    expect(stream.seqs).toEqual([1, 2]);
    const { feed, release } = feeds.acquire(TENANT, THREAD);
    reader.append(2);
    // A push of seqs 2..4: 2 is known, 3 and 4 continue the head; no log read needed.
    const readsBefore = reader.calls;
    feed.push(reader.log.slice(1, 4));
    await vi.advanceTimersByTimeAsync(0);
    expect(stream.seqs).toEqual([1, 2, 3, 4]);
    expect(reader.calls).toBe(readsBefore);
    // A push after a gap (5 and 6 missed): the buffer starts at 7, the stream reads 5..6 from the log.
    reader.append(3);
    feed.push(reader.log.slice(6, 7));
    await vi.advanceTimersByTimeAsync(0);
    expect(stream.seqs).toEqual([1, 2, 3, 4, 5, 6, 7]);
    release();
    await stream.stop();
  });
});
