import type { Context } from "hono";
import { type SSEStreamingApi, streamSSE } from "hono/streaming";
import { warnUnlessReported } from "../logging/faults.ts";
import { logger } from "../logging/logger.ts";
import { type Metrics, noMetrics } from "../model/metrics.ts";
import type { LogEvent } from "../model/patch.ts";
import type { EventReader, FeedSource } from "../live/feed.ts";
import { ThreadFollower } from "../live/follow.ts";

export interface StreamOptions {
  /** `retry:` sent once: how long a disconnected EventSource waits before reconnecting (ms). */
  retryMs: number;
  /** A `: ping` comment at least this often while idle (ms). */
  pingMs: number;
  /** Every stream ends after this long, so a runtime that never reports a disconnect still frees it (ms). */
  maxLifetimeMs: number;
  /** Events a stream reads per direct log query, when it is behind its feed (default 100). */
  readBatchSize?: number;
  /** A stream's direct read not settled after this long is given up on, and tried again (ms; default 10 s). */
  readTimeoutMs?: number;
}

const DEFAULT_READ_BATCH = 100;
const DEFAULT_READ_TIMEOUT_MS = 10_000;

const encoder = new TextEncoder();
/**
 * Each event's SSE frame, encoded once: a feed hands the same event objects to every
 * stream at the head, so 1,000 subscribers share one buffer instead of each building
 * and encoding its own copy.
 */
const frames = new WeakMap<LogEvent, Uint8Array>();

function frameOf(event: LogEvent): Uint8Array {
  let frame = frames.get(event);
  if (!frame) {
    // data is JSON.stringify output: one line, so no field can be injected.
    frame = encoder.encode(`id: ${event.seq}\nevent: ${eventName(event)}\ndata: ${event.data}\n\n`);
    frames.set(event, frame);
  }
  return frame;
}

/**
 * Streams a thread's events after `resumeAfter` as `artifact-updated`, each once, in
 * seq order, without gaps: catch up from the log, then wait on the thread's feed (see
 * ThreadFollower). A log that cannot be read does not end the stream: it stays open
 * (pinged) and delivers once the log answers. Every exit path (client gone, runtime
 * abort, lifetime over, server draining) frees the same things once.
 */
export function streamThreadEvents(
  c: Context,
  target: { tenant: string; threadId: string; resumeAfter: number },
  deps: { feeds: FeedSource; reader: EventReader; options: StreamOptions; metrics?: Metrics },
): Response {
  const { feeds, reader } = deps;
  setStreamHeaders(c);
  return streamSSE(c, async (stream) => {
    const { feed, release } = feeds.acquire(target.tenant, target.threadId);
    const readFailures = new FailureLog(target.threadId);
    const follower = new ThreadFollower(feed, reader, {
      tenant: target.tenant,
      threadId: target.threadId,
      after: target.resumeAfter,
    }, {
      batchSize: deps.options.readBatchSize ?? DEFAULT_READ_BATCH,
      readTimeoutMs: deps.options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS,
      onReadError: (error) => readFailures.failed(error),
    });
    // A due ping or the end interrupts the follower's wait; the loop then writes or stops.
    const session = new StreamSession(stream, c.req.raw, deps.options, () => follower.interrupt());
    const measured = (deps.metrics ?? noMetrics).streamOpened("thread");
    try {
      await session.start();
      let deleted = false;
      while (!session.stopped && !feeds.draining && !deleted) {
        const events = await follower.next();
        if (events.length > 0) readFailures.recovered();
        for (const event of events) {
          if (session.stopped) break;
          await session.write(frameOf(event));
          measured.eventsSent(1);
          // The thread's life ended: so does its stream (a client resuming after the
          // tombstone's id waits for the thread's next life).
          if (event.event === "thread-deleted") {
            deleted = true;
            break;
          }
        }
        await session.pingIfDue();
      }
    } catch {
      // A write to a client that is gone: nothing to tell anyone.
    } finally {
      session.close();
      follower.close();
      release();
      measured.closed();
    }
  });
}

/** One thread of a multi-thread stream, and where it starts. */
export interface StreamedThread {
  threadId: string;
  after: number;
}

/**
 * Streams the events of several threads on one connection (`GET /v1/events`): one
 * ThreadFollower per thread on the same feeds single-thread streams use (shared per
 * process on Node, pushed on Workers), merged as they come, each thread's in seq order
 * without gaps. Every event's `id:` is `eventId` of every thread's position after it, so
 * a reconnect resumes the whole set. A follower hands over its events and waits until
 * they are written (a slow client holds back its threads' reads, not memory).
 */
export function streamManyThreadEvents(
  c: Context,
  target: { tenant: string; threads: readonly StreamedThread[] },
  deps: {
    feeds: FeedSource;
    reader: EventReader;
    options: StreamOptions;
    eventId: (positions: ReadonlyMap<string, number>) => Promise<string>;
    metrics?: Metrics;
  },
): Response {
  const { feeds, reader } = deps;
  setStreamHeaders(c);
  return streamSSE(c, async (stream) => {
    const positions = new Map(target.threads.map((t) => [t.threadId, t.after]));
    const ready: { threadId: string; events: LogEvent[]; written: () => void }[] = [];
    let wakeWriter: (() => void) | null = null;
    const wake = () => {
      const resume = wakeWriter;
      wakeWriter = null;
      resume?.();
    };
    const followed = target.threads.map(({ threadId, after }) => {
      const { feed, release } = feeds.acquire(target.tenant, threadId);
      const readFailures = new FailureLog(threadId);
      const follower = new ThreadFollower(feed, reader, { tenant: target.tenant, threadId, after }, {
        batchSize: deps.options.readBatchSize ?? DEFAULT_READ_BATCH,
        readTimeoutMs: deps.options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS,
        onReadError: (error) => readFailures.failed(error),
      });
      return { threadId, follower, release, readFailures };
    });
    const session = new StreamSession(stream, c.req.raw, deps.options, () => {
      if (session.stopped) { for (const { follower } of followed) follower.interrupt(); }
      wake();
    });
    const pumps = followed.map(async ({ threadId, follower, readFailures }) => {
      while (!session.stopped && !feeds.draining) {
        const events = await follower.next();
        if (events.length === 0) continue;
        readFailures.recovered();
        await new Promise<void>((written) => {
          ready.push({ threadId, events, written });
          wake();
        });
      }
      // Draining: the writer must notice even if no thread has anything to say.
      wake();
    });
    const measured = (deps.metrics ?? noMetrics).streamOpened("many");
    try {
      await session.start();
      while (!session.stopped && !feeds.draining) {
        const batch = ready.shift();
        if (batch) {
          for (const event of batch.events) {
            if (session.stopped) break;
            positions.set(batch.threadId, event.seq);
            await session.write(multiFrame(await deps.eventId(positions), event));
            measured.eventsSent(1);
          }
          batch.written();
          continue;
        }
        if (session.pingDue) {
          await session.pingIfDue();
          continue;
        }
        await new Promise<void>((resume) => {
          wakeWriter = resume;
        });
      }
    } catch {
      // A write to a client that is gone: nothing to tell anyone.
    } finally {
      session.close();
      for (const { follower } of followed) follower.interrupt();
      for (const batch of ready.splice(0)) batch.written();
      await Promise.all(pumps);
      for (const { follower, release } of followed) {
        follower.close();
        release();
      }
      measured.closed();
    }
  });
}

function multiFrame(id: string, event: LogEvent): string {
  // The token is base64url and ".", the data one line of JSON: no field can be injected.
  return `id: ${id}\nevent: ${eventName(event)}\ndata: ${event.data}\n\n`;
}

function eventName(event: LogEvent): string {
  return event.event ?? "artifact-updated";
}

function setStreamHeaders(c: Context): void {
  c.header("Cache-Control", "no-cache, no-transform");
  c.header("X-Accel-Buffering", "no");
}

/**
 * What every stream does besides its events: `retry:` first, a `: ping` when nothing
 * was written for `pingMs` (one timer, re-armed only when it fires), an end after
 * `maxLifetimeMs` or when the client or the runtime aborts. `onWake` is called when a
 * ping falls due and when the stream stops, so a stream waiting for events can act.
 */
class StreamSession {
  readonly #stream: SSEStreamingApi;
  readonly #request: Request;
  readonly #options: StreamOptions;
  readonly #onWake: () => void;
  readonly #lifetime: ReturnType<typeof setTimeout>;
  #pingTimer: ReturnType<typeof setTimeout> | undefined;
  #lastWrite = Date.now();
  #stopped = false;
  #pingDue = false;
  readonly #stop = () => {
    this.#stopped = true;
    this.#onWake();
  };

  constructor(stream: SSEStreamingApi, request: Request, options: StreamOptions, onWake: () => void) {
    this.#stream = stream;
    this.#request = request;
    this.#options = options;
    this.#onWake = onWake;
    stream.onAbort(this.#stop);
    request.signal.addEventListener("abort", this.#stop, { once: true });
    this.#lifetime = setTimeout(this.#stop, options.maxLifetimeMs);
    this.#armPing(options.pingMs);
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  get pingDue(): boolean {
    return this.#pingDue;
  }

  start(): Promise<void> {
    return this.write(`retry: ${this.#options.retryMs}\n\n`);
  }

  async write(chunk: string | Uint8Array): Promise<void> {
    await this.#stream.write(chunk);
    this.#pingDue = false;
    this.#lastWrite = Date.now();
  }

  async pingIfDue(): Promise<void> {
    if (this.#pingDue && !this.#stopped) await this.write(": ping\n\n");
  }

  close(): void {
    this.#stopped = true;
    clearTimeout(this.#lifetime);
    clearTimeout(this.#pingTimer);
    this.#request.signal.removeEventListener("abort", this.#stop);
  }

  #armPing(ms: number): void {
    this.#pingTimer = setTimeout(() => {
      const idle = Date.now() - this.#lastWrite;
      if (idle < this.#options.pingMs) return this.#armPing(this.#options.pingMs - idle);
      this.#pingDue = true;
      this.#onWake();
      this.#armPing(this.#options.pingMs);
    }, ms);
  }
}

const log = logger("sse");

/**
 * One log line per streak of failed reads of a stream, not one per retry (a store
 * down for a minute would otherwise log every tick of every stream), and nothing
 * internal to the client; a debug line only when the store logged the fault itself.
 */
class FailureLog {
  readonly #threadId: string;
  #failing = false;

  constructor(threadId: string) {
    this.#threadId = threadId;
  }

  failed(error: unknown): void {
    if (this.#failing) return;
    this.#failing = true;
    warnUnlessReported(
      log,
      "event stream: the log cannot be read; retrying on the next tick",
      { threadId: this.#threadId },
      error,
    );
  }

  recovered(): void {
    this.#failing = false;
  }
}

/** The resume point: `Last-Event-ID`, else `since`, else 0. Null when one is malformed. */
export function resumePoint(lastEventId: string | undefined, since: string | undefined): number | null {
  // An empty Last-Event-ID is what a client sends before it has seen an id: not a resume point.
  const raw = lastEventId?.trim() ? lastEventId : since;
  if (raw === undefined || raw === "") return 0;
  return /^(0|[1-9][0-9]{0,14})$/.test(raw.trim()) ? Number(raw.trim()) : null;
}
