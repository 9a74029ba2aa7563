import type { Context } from "hono";
import { warnUnlessReported } from "../logging/faults.ts";
import { logger } from "../logging/logger.ts";
import { describeError } from "../model/errors.ts";
import { type Metrics, noMetrics, type StreamKind } from "../model/metrics.ts";
import type { LogEvent } from "../model/patch.ts";
import type { EventReader, FeedSource } from "../live/feed.ts";
import { ThreadFollower } from "../live/follow.ts";
import { EventBody } from "./event-body.ts";

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
  /**
   * A write its client has not taken after this long ends the stream (ms; default 15 s):
   * the client stopped reading, and resumes from its last event id once it reads again.
   */
  stallMs?: number;
}

const DEFAULT_READ_BATCH = 100;
const DEFAULT_READ_TIMEOUT_MS = 10_000;
const DEFAULT_STALL_MS = 15_000;

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
 * abort, lifetime over, client stalled, server draining) frees the same things once.
 *
 * What a stream holds while its client is slow: the batch `follower.next()` returned
 * (at most `readBatchSize` events; at the head these are the feed's own buffered events,
 * no copy) and the one frame its write is handing over (see EventBody).
 */
export function streamThreadEvents(
  c: Context,
  target: { tenant: string; threadId: string; resumeAfter: number },
  deps: {
    feeds: FeedSource;
    reader: EventReader;
    options: StreamOptions;
    metrics?: Metrics;
    /** Called once when the stream's loop ends (its place under the tenant's stream cap is given back). */
    onClosed?: () => void;
  },
): Response {
  const { feeds, reader } = deps;
  const metrics = deps.metrics ?? noMetrics;
  return eventStream(c, async (body) => {
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
    const session = new StreamSession(body, c.req.raw, deps.options, () => follower.interrupt(), {
      kind: "thread",
      metrics,
      fields: { threadId: target.threadId },
    });
    const measured = metrics.streamOpened("thread");
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
      // A write to a client that is gone, or that stopped reading (logged by the session).
    } finally {
      session.close();
      follower.close();
      release();
      measured.closed();
      // Before the body's last word: a stalled client may hold that for up to stallMs.
      deps.onClosed?.();
      await session.finish();
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
 * they are written (a slow client holds back its threads' reads, not memory): each
 * thread has at most one batch out, waiting in `ready` or being written, so a stream
 * holds at most one batch per thread it follows, plus the frame being handed over.
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
    /** Called once when the stream's loop ends (its place under the tenant's stream cap is given back). */
    onClosed?: () => void;
  },
): Response {
  const { feeds, reader } = deps;
  const metrics = deps.metrics ?? noMetrics;
  return eventStream(c, async (body) => {
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
    const session = new StreamSession(body, c.req.raw, deps.options, () => {
      if (session.stopped) { for (const { follower } of followed) follower.interrupt(); }
      wake();
    }, { kind: "many", metrics, fields: { threads: target.threads.length } });
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
    const measured = metrics.streamOpened("many");
    try {
      await session.start();
      while (!session.stopped && !feeds.draining) {
        const batch = ready.shift();
        if (batch) {
          try {
            for (const event of batch.events) {
              if (session.stopped) break;
              positions.set(batch.threadId, event.seq);
              await session.write(multiFrame(await deps.eventId(positions), event));
              measured.eventsSent(1);
            }
          } finally {
            // Also when a write fails: its pump must not wait for good (the end awaits every pump).
            batch.written();
          }
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
      // A write to a client that is gone, or that stopped reading (logged by the session).
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
      deps.onClosed?.();
      await session.finish();
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

/**
 * The response of an event stream: `run` writes to `body` and ends it (StreamSession's
 * `finish`); should it throw, the body ends here.
 */
function eventStream(c: Context, run: (body: EventBody) => Promise<void>): Response {
  const body = new EventBody();
  // What Hono's streamSSE sends; @hono/node-server reads a chunked body as it comes.
  c.header("Content-Type", "text/event-stream");
  c.header("Cache-Control", "no-cache, no-transform");
  c.header("Connection", "keep-alive");
  c.header("Transfer-Encoding", "chunked");
  c.header("X-Accel-Buffering", "no");
  run(body).catch((error: unknown) => {
    log.error("event stream failed", { error: describeError(error) });
    body.close();
  });
  return c.newResponse(body.readable);
}

/**
 * What a runtime that drops a stream's connection is told (and may print: Node's
 * @hono/node-server and Deno write it to stderr once). Strings, so that is one line.
 */
const STALLED = "event stream ended: its client stopped reading (it resumes with Last-Event-ID)";
const OVER_BEHIND = "event stream ended: its lifetime is over and its client is behind (it resumes with Last-Event-ID)";

/** How a session reports a stream that stalled: its kind, and the fields of its log line. */
interface StreamReport {
  kind: StreamKind;
  metrics: Metrics;
  fields: Record<string, string | number>;
}

/**
 * What every stream does besides its events: `retry:` first, a `: ping` when nothing
 * was written for `pingMs` (one timer, re-armed only when it fires), an end after
 * `maxLifetimeMs` or when the client or the runtime aborts. `onWake` is called when a
 * ping falls due and when the stream stops, so a stream waiting for events can act.
 *
 * A write the client does not take within `stallMs` (its runtime asked for no more
 * bytes: the socket's buffers are full) ends the stream: the body fails, so the runtime
 * drops the connection and frees what it buffered, the pending write rejects and the
 * stream's loop ends through its `finally` (feed released, gauge down). The end of the
 * lifetime and a client that went away (the runtime cancels the body, or aborts the
 * request) end a waiting write the same way, at once: a stream past its lifetime ends
 * even if its client stopped reading. The lifetime fails the body (the connection and
 * its buffer go); a client gone gets a clean end (nobody reads it). With no write
 * waiting the loop ends between writes, and `finish` ends the body cleanly at the
 * runtime's next read, under the same deadline.
 */
class StreamSession {
  readonly #body: EventBody;
  readonly #request: Request;
  readonly #options: StreamOptions;
  readonly #stallMs: number;
  readonly #onWake: () => void;
  readonly #report: StreamReport;
  readonly #lifetime: ReturnType<typeof setTimeout>;
  #pingTimer: ReturnType<typeof setTimeout> | undefined;
  #lastWrite = Date.now();
  #stopped = false;
  #pingDue = false;
  /** A write is waiting for its client to take it. */
  #waiting = false;
  readonly #stop = () => {
    this.#stopped = true;
    this.#onWake();
  };
  /** The client is gone: nothing will be read, a waiting write gives up now. */
  readonly #abandon = () => {
    this.#body.close();
    this.#stop();
  };
  /** The lifetime is over: a client that is behind is not waited for. */
  readonly #expire = () => {
    if (this.#waiting) this.#body.fail(OVER_BEHIND);
    this.#stop();
  };
  readonly #stalled = () => {
    if (this.#body.ended) return;
    this.#report.metrics.streamStalled(this.#report.kind);
    log.info("event stream ended: its client took nothing for {stallMs} ms; it resumes from its last event id", {
      kind: this.#report.kind,
      stallMs: this.#stallMs,
      ...this.#report.fields,
    });
    this.#body.fail(STALLED);
    this.#stop();
  };

  constructor(body: EventBody, request: Request, options: StreamOptions, onWake: () => void, report: StreamReport) {
    this.#body = body;
    this.#request = request;
    this.#options = options;
    this.#stallMs = options.stallMs ?? DEFAULT_STALL_MS;
    this.#onWake = onWake;
    this.#report = report;
    body.onCancel(this.#stop);
    request.signal.addEventListener("abort", this.#abandon, { once: true });
    this.#lifetime = setTimeout(this.#expire, options.maxLifetimeMs);
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

  /** Resolves once the runtime took `chunk`; rejects if the stream ended first (gone, or stalled). */
  write(chunk: string | Uint8Array): Promise<void> {
    // Encoded here, so a waiting write holds the bytes only, not the text as well.
    return this.#write(typeof chunk === "string" ? encoder.encode(chunk) : chunk);
  }

  async #write(bytes: Uint8Array): Promise<void> {
    await this.#handOver(() => this.#body.write(bytes));
    this.#pingDue = false;
    this.#lastWrite = Date.now();
  }

  /**
   * The clean end, once the stream's loop is over (after `close`): at the runtime's next
   * read, or dropped as stalled if that does not come within `stallMs` (a client that
   * stopped reading just before the end). Never rejects.
   */
  async finish(): Promise<void> {
    try {
      await this.#handOver(() => this.#body.finish());
    } catch {
      // Ended otherwise meanwhile (gone, or stalled).
    }
  }

  /** Waits for the runtime to read, under the stall deadline. */
  async #handOver(handOver: () => Promise<void>): Promise<void> {
    // Armed only when the client is behind (the runtime is not reading): a client that
    // keeps up costs no timer per write.
    if (!this.#body.backedUp) return await handOver();
    const deadline = setTimeout(this.#stalled, this.#stallMs);
    this.#waiting = true;
    try {
      await handOver();
    } finally {
      this.#waiting = false;
      clearTimeout(deadline);
    }
  }

  async pingIfDue(): Promise<void> {
    if (this.#pingDue && !this.#stopped) await this.write(": ping\n\n");
  }

  close(): void {
    this.#stopped = true;
    clearTimeout(this.#lifetime);
    clearTimeout(this.#pingTimer);
    this.#request.signal.removeEventListener("abort", this.#abandon);
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
