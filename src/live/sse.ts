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

export const DEFAULT_STREAM_OPTIONS: StreamOptions = { retryMs: 2000, pingMs: 15_000, maxLifetimeMs: 5 * 60_000 };

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
    const end = () => stop.abort();
    stream.onAbort(end);
    c.req.raw.signal.addEventListener("abort", end, { once: true });
    const lifetime = setTimeout(end, options.maxLifetimeMs);
    const { feed, release } = hub.acquire(target.tenant, target.threadId);
    try {
      await stream.write(`retry: ${options.retryMs}\n\n`);
      let cursor = target.resumeAfter;
      let lastWrite = Date.now();
      while (!stop.signal.aborted) {
        const seen = feed.generation;
        let events: LogEvent[] | null = feed.fromBuffer(cursor);
        events ??= await reader.readEvents(target.tenant, target.threadId, cursor, hub.batchSize);
        for (const event of events) {
          if (stop.signal.aborted) break;
          // data is JSON.stringify output: one line, so no field can be injected.
          await stream.write(`id: ${event.seq}\nevent: artifact-updated\ndata: ${event.data}\n\n`);
          cursor = event.seq;
          lastWrite = Date.now();
        }
        if (events.length > 0 || stop.signal.aborted) continue;
        const untilPing = options.pingMs - (Date.now() - lastWrite);
        if (untilPing <= 0) {
          await stream.write(": ping\n\n");
          lastWrite = Date.now();
          continue;
        }
        await feed.waitForNext(seen, stop.signal, untilPing);
      }
    } finally {
      clearTimeout(lifetime);
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
