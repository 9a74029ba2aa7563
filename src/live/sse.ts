import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { describeError } from "../model/errors.ts";
import type { LogEvent } from "../model/patch.ts";
import type { EventReader, FeedSource } from "./feed.ts";
import { ThreadFollower } from "./follow.ts";

export interface StreamOptions {
  /** `retry:` sent once: how long a disconnected EventSource waits before reconnecting (ms). */
  retryMs: number;
  /** A `: ping` comment at least this often while idle (ms). */
  pingMs: number;
  /** Every stream ends after this long, so a runtime that never reports a disconnect still frees it (ms). */
  maxLifetimeMs: number;
}

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
    frame = encoder.encode(`id: ${event.seq}\nevent: artifact-updated\ndata: ${event.data}\n\n`);
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
  deps: { hub: FeedSource; reader: EventReader; options: StreamOptions },
): Response {
  const { hub, reader, options } = deps;
  c.header("Cache-Control", "no-cache, no-transform");
  c.header("X-Accel-Buffering", "no");
  return streamSSE(c, async (stream) => {
    const { feed, release } = hub.acquire(target.tenant, target.threadId);
    const readFailures = new FailureLog(target.threadId);
    const follower = new ThreadFollower(feed, reader, {
      tenant: target.tenant,
      threadId: target.threadId,
      after: target.resumeAfter,
    }, {
      batchSize: hub.batchSize,
      readTimeoutMs: hub.readTimeoutMs,
      onReadError: (error) => readFailures.failed(error),
    });
    let stopped = false;
    const end = () => {
      stopped = true;
      follower.interrupt();
    };
    stream.onAbort(end);
    c.req.raw.signal.addEventListener("abort", end, { once: true });
    const lifetime = setTimeout(end, options.maxLifetimeMs);
    // Ping when nothing was written for `pingMs`: one timer per stream, re-armed only when
    // it fires (writes just move `lastWrite`), with web-standard timers only.
    let lastWrite = Date.now();
    let pingDue = false;
    let pingTimer: ReturnType<typeof setTimeout> | undefined;
    const armPing = (ms: number) => {
      pingTimer = setTimeout(() => {
        const idle = Date.now() - lastWrite;
        if (idle < options.pingMs) return armPing(options.pingMs - idle);
        pingDue = true;
        follower.interrupt();
        armPing(options.pingMs);
      }, ms);
    };
    armPing(options.pingMs);
    const wrote = () => {
      pingDue = false;
      lastWrite = Date.now();
    };
    try {
      await stream.write(`retry: ${options.retryMs}\n\n`);
      wrote();
      while (!stopped && !hub.draining) {
        const events = await follower.next();
        if (events.length > 0) readFailures.recovered();
        for (const event of events) {
          if (stopped) break;
          await stream.write(frameOf(event));
          wrote();
        }
        if (pingDue && !stopped) {
          await stream.write(": ping\n\n");
          wrote();
        }
      }
    } catch {
      // A write to a client that is gone: nothing to tell anyone.
    } finally {
      clearTimeout(lifetime);
      clearTimeout(pingTimer);
      follower.close();
      c.req.raw.signal.removeEventListener("abort", end);
      release();
    }
  });
}

/**
 * One log line per streak of failed reads of a stream, not one per retry (a store
 * down for a minute would otherwise log every tick of every stream), and nothing
 * internal to the client.
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
    console.warn(
      `event stream of ${this.#threadId}: the log cannot be read (${describeError(error)}); retrying on the next tick`,
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
