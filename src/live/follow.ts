import type { LogEvent } from "../model/patch.ts";
import { withDeadline } from "../model/deadline.ts";
import type { EventReader, ThreadFeed } from "./feed.ts";

export interface FollowOptions {
  /** Events read per direct log query (a stream behind the feed's buffer). */
  batchSize: number;
  /** A direct read not settled after this long is given up on (ms); the stream tries again on the next tick. */
  readTimeoutMs: number;
  /** A direct read failed (the stream stays open and tries again on the feed's next tick). */
  onReadError?: (error: unknown) => void;
}

/**
 * One stream's position in one thread's log: catch up from the log, then take events
 * from the thread's shared feed, each once, in seq order, without gaps. Independent of
 * the transport (SSE writes what `next` returns), so its liveness is testable alone.
 *
 * It never gives up on a failed read: the stream stays open and reads again when the
 * feed next refreshes (a hint, or the poll tick), so a stream opened while the cache
 * and the rollout are unreachable, or racing the process's start, delivers as soon as
 * the log can be read. Ending a stream instead would hand recovery to the client, and
 * not every client reconnects after a clean end (fetch-event-source does not).
 */
export class ThreadFollower {
  readonly #feed: ThreadFeed;
  readonly #reader: EventReader;
  readonly #tenant: string;
  readonly #threadId: string;
  readonly #options: FollowOptions;
  #cursor: number;
  #interrupted = false;
  /** The last log read came back short of a batch: the log had nothing more then. */
  #readToEnd = false;
  #resume: (() => void) | null = null;
  /** One wake-up function for every reason to stop waiting: registered, never re-created. */
  readonly #wake = () => {
    const resume = this.#resume;
    this.#resume = null;
    resume?.();
  };

  constructor(
    feed: ThreadFeed,
    reader: EventReader,
    target: { tenant: string; threadId: string; after: number },
    options: FollowOptions,
  ) {
    this.#feed = feed;
    this.#reader = reader;
    this.#tenant = target.tenant;
    this.#threadId = target.threadId;
    this.#cursor = target.after;
    this.#options = options;
  }

  /** The seq of the last event `next` returned (the resume point before any). */
  get cursor(): number {
    return this.#cursor;
  }

  /**
   * The next events after the cursor (contiguous, at least one), or `[]` once
   * `interrupt` was called (a ping is due, or the stream ends) or the feed has ended
   * (its feed source is draining). Never rejects.
   */
  async next(): Promise<LogEvent[]> {
    for (;;) {
      if (this.#feed.ended) return [];
      if (this.#interrupted) {
        this.#interrupted = false;
        return [];
      }
      // Taken before reading, so whatever the feed does during the read wakes the wait.
      const seenGeneration = this.#feed.generation;
      const seenTick = this.#feed.ticks;
      let events = this.#feed.fromBuffer(this.#cursor);
      let retryOnTick = false;
      if (events === null) {
        if (this.#readToEnd && this.#feed.head === undefined) {
          // The log was read to its end and the feed has not learnt its head yet: no
          // second read before it does (one catch-up read per stream opened, not two).
          await this.#wait(seenGeneration, seenTick, "either");
          continue;
        }
        events = await this.#readLog();
        if (this.#interrupted) continue;
        // Failed, or empty although the feed has read past the cursor (a stale or
        // lagging store): read again on the next refresh, not only on the next event.
        const head = this.#feed.head;
        retryOnTick = events === null || (events.length === 0 && head !== undefined && head > this.#cursor);
        this.#readToEnd = events !== null && events.length < this.#options.batchSize;
      }
      const fresh = this.#continuation(events ?? []);
      if (fresh.length > 0) {
        this.#cursor = (fresh[fresh.length - 1] as LogEvent).seq;
        return fresh;
      }
      // Events came back but none continues the cursor (a gap): read again on the next refresh.
      if (events !== null && events.length > 0) retryOnTick = true;
      if (this.#interrupted) continue;
      // A read that failed waits for the feed's next refresh; one that came back short of
      // the feed's head (or with a gap) also for the feed's next news: what the feed learnt
      // while it read (the sequencer's greeting, a push) may be what it needs.
      await this.#wait(seenGeneration, seenTick, events === null ? "tick" : retryOnTick ? "either" : "events");
    }
  }

  /** Waits for new events, the feed's next refresh, or either; or an interrupt. */
  async #wait(seenGeneration: number, seenTick: number, until: "events" | "tick" | "either"): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#resume = resolve;
      if (until !== "events") this.#feed.wakeOnTick(seenTick, this.#wake);
      if (until !== "tick") this.#feed.wakeOnNext(seenGeneration, this.#wake);
    });
    // Woken by an interrupt (or one of two wake-ups), the feed may still hold the other: drop it.
    this.#feed.stopWaiting(this.#wake);
  }

  /** Makes a pending or the next `next` return `[]`. */
  interrupt(): void {
    this.#interrupted = true;
    this.#wake();
  }

  /** Frees the feed's hold on this follower's wake-up (the feed itself is released by its owner). */
  close(): void {
    this.#feed.stopWaiting(this.#wake);
  }

  /** The log after the cursor; null if the read failed or timed out, or was cut short by `interrupt`. */
  async #readLog(): Promise<LogEvent[] | null> {
    const interrupted = new Promise<null>((resolve) => {
      this.#resume = () => resolve(null);
    });
    try {
      const read = this.#reader.readEvents(this.#tenant, this.#threadId, this.#cursor, this.#options.batchSize);
      return await Promise.race([withDeadline(read, this.#options.readTimeoutMs, "event log read"), interrupted]);
    } catch (error) {
      this.#options.onReadError?.(error);
      return null;
    } finally {
      this.#resume = null;
    }
  }

  /**
   * The events that continue the cursor: anything at or before it is dropped (a
   * duplicate), and a batch that does not start right after it is not sent at all
   * (a gap would break the stream's promise; the next read fills it).
   */
  #continuation(events: readonly LogEvent[]): LogEvent[] {
    const start = events.findIndex((event) => event.seq > this.#cursor);
    if (start < 0) return [];
    const rest = events.slice(start);
    // A tombstone may follow any earlier seq: the life before it is gone from the log.
    const first = rest[0] as LogEvent;
    if (first.seq !== this.#cursor + 1 && first.event !== "thread-deleted") return [];
    for (let i = 1; i < rest.length; i++) {
      if ((rest[i] as LogEvent).seq !== (rest[i - 1] as LogEvent).seq + 1) return rest.slice(0, i);
    }
    return rest;
  }
}
