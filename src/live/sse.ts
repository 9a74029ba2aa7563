import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { EventReader, FeedHub, LogEvent } from "./feed.ts";

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
 * seq order, without gaps: catch up from the log, then wait on the thread's feed.
 * Every exit path (client gone, runtime abort, lifetime over) frees the same things once.
 */
export function streamThreadEvents(
  c: Context,
  target: { tenant: string; threadId: string; resumeAfter: number },
  deps: { hub: FeedHub; reader: EventReader; options: StreamOptions },
): Response {
  const { hub, reader, options } = deps;
  c.header("Cache-Control", "no-cache, no-transform");
  c.header("X-Accel-Buffering", "no");
  return streamSSE(c, async (stream) => {
    const stop = new AbortController();
    // One wake-up function per stream, for every reason to stop waiting (new events,
    // ping due, end): no promise machinery, timer or listener is created per event.
    let resume: (() => void) | null = null;
    const wake = () => {
      const r = resume;
      resume = null;
      r?.();
    };
    const end = () => {
      stop.abort();
      wake();
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
        wake();
        armPing(options.pingMs);
      }, ms);
    };
    armPing(options.pingMs);
    const wrote = () => {
      pingDue = false;
      lastWrite = Date.now();
    };
    const { feed, release } = hub.acquire(target.tenant, target.threadId);
    try {
      await stream.write(`retry: ${options.retryMs}\n\n`);
      wrote();
      let cursor = target.resumeAfter;
      while (!stop.signal.aborted && !hub.draining) {
        const seen = feed.generation;
        let events: LogEvent[] | null = feed.fromBuffer(cursor);
        events ??= await reader.readEvents(target.tenant, target.threadId, cursor, hub.batchSize);
        for (const event of events) {
          if (stop.signal.aborted) break;
          await stream.write(frameOf(event));
          cursor = event.seq;
          wrote();
        }
        if (events.length > 0 || stop.signal.aborted) continue;
        if (pingDue) {
          await stream.write(": ping\n\n");
          wrote();
          continue;
        }
        await new Promise<void>((resolve) => {
          resume = resolve;
          feed.wakeOnNext(seen, wake);
        });
      }
    } catch (error) {
      // The log could not be read (the rollout store failing while the cache lacks the
      // events): end the stream; the client reconnects after `retry` and resumes from its
      // Last-Event-ID. Nothing internal goes to the client, and one line to the log.
      if (!stop.signal.aborted) console.warn(`event stream of ${target.threadId} ended: ${describe(error)}`);
    } finally {
      clearTimeout(lifetime);
      clearTimeout(pingTimer);
      feed.stopWaiting(wake);
      c.req.raw.signal.removeEventListener("abort", end);
      release();
    }
  });
}

/** The resume point: `Last-Event-ID`, else `since`, else 0. Null when one is malformed. */
export function resumePoint(lastEventId: string | undefined, since: string | undefined): number | null {
  // An empty Last-Event-ID is what a client sends before it has seen an id: not a resume point.
  const raw = lastEventId?.trim() ? lastEventId : since;
  if (raw === undefined || raw === "") return 0;
  return /^(0|[1-9][0-9]{0,14})$/.test(raw.trim()) ? Number(raw.trim()) : null;
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message.split("\n")[0]}` : String(error);
}
