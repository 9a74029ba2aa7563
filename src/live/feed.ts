import { withDeadline } from "../model/deadline.ts";
import { threadKey } from "../model/ids.ts";
import type { LogEvent } from "../model/patch.ts";
import { detached } from "../model/tracing.ts";
import type { Notifier } from "./notifier.ts";

/** Where streams read the durable event log (the cache's log, or the rollout when the cache is down). */
export interface EventReader {
  /** Events after `afterSeq`, ascending and contiguous, at most `limit`. */
  readEvents(tenant: string, threadId: string, afterSeq: number, limit: number): Promise<LogEvent[]>;
  /** The seq of the thread's last committed patch (0 for a thread with none). */
  head(tenant: string, threadId: string): Promise<number>;
  /**
   * Several threads' logs in one read of the cache, each page as `readEvents` gives it,
   * but an empty page is trusted unless `head` (a head the thread's sequencer told)
   * says the log goes further. Optional: readers without it are read thread by thread.
   */
  readEventsMany?(
    tenant: string,
    reads: readonly { threadId: string; afterSeq: number; head?: number }[],
    limit: number,
  ): Promise<LogEvent[][]>;
}

export interface FeedOptions {
  reader: EventReader;
  notifier: Notifier;
  /** How often a thread with subscribers re-reads its log without a hint (ms); 0: never by itself (its owner refreshes it). */
  pollMs: number;
  /**
   * Read the head and the log at once when created (default true). False: the feed waits
   * to be told its head (`learnHead`: the Workers sequencer's greeting) or pushed events.
   */
  readAtStart?: boolean;
  /** Events kept in memory per thread for subscribers at the head. */
  bufferSize?: number;
  /**
   * And at most this many characters of event data (the newest event always): with large
   * payloads the count alone would keep tens of MiB per followed thread (each event is held
   * as data and as its encoded frame). A stream behind the buffer reads the log itself.
   */
  bufferChars?: number;
  /** Events read per log query. */
  batchSize?: number;
  /**
   * A log read that has not settled after this long is given up on (ms), so one hung
   * store request (a half-open socket, a stuck libSQL call) cannot park a feed: the
   * next hint or poll tick reads again.
   */
  readTimeoutMs?: number;
  /** A failed refresh (the feed tries again on the next hint or tick). */
  onError?: (error: unknown) => void;
}

const DEFAULT_READ_TIMEOUT_MS = 10_000;

/** Where a stream gets its thread's feed: shared per process (FeedHub) or its own, fed by pushes (Workers). */
export interface FeedSource {
  acquire(tenant: string, threadId: string): { feed: ThreadFeed; release: () => void };
  /** Where streams on these feeds read the log themselves (default: the service; PushedFeeds gathers reads). */
  readonly reader?: EventReader;
  /** The process is shutting down: streams end. */
  readonly draining: boolean;
  /** Ends every stream now (the process shuts down; clients resume elsewhere). */
  drain(): void;
  /** Feeds open now. */
  readonly size: number;
}

/**
 * One poller per thread per process, however many streams watch it: a hint or a
 * poll tick makes ONE log read, and every stream at the head takes its events from
 * the shared buffer. Streams behind the buffer read the log themselves.
 */
/** 2 Mi characters of event data per thread's buffer: ~34 events of 60 KB, every event of 8 KB. */
export const DEFAULT_BUFFER_CHARS = 2 * 1024 * 1024;

export class FeedHub implements FeedSource {
  readonly #options: Required<FeedOptions>;
  readonly #feeds = new Map<string, ThreadFeed>();
  #draining = false;

  constructor(options: FeedOptions) {
    this.#options = {
      readAtStart: true,
      bufferSize: 256,
      bufferChars: DEFAULT_BUFFER_CHARS,
      batchSize: 100,
      readTimeoutMs: DEFAULT_READ_TIMEOUT_MS,
      onError: () => {},
      ...options,
    };
  }

  get batchSize(): number {
    return this.#options.batchSize;
  }

  get readTimeoutMs(): number {
    return this.#options.readTimeoutMs;
  }

  /** A feed for the thread, kept alive until every acquirer has released it. */
  acquire(tenant: string, threadId: string): { feed: ThreadFeed; release: () => void } {
    const key = threadKey(tenant, threadId);
    let feed = this.#feeds.get(key);
    if (!feed) {
      // Shared by every stream of the thread and outliving the one that opened it: its
      // polls are no part of that request's trace (nor are the reads hints start).
      feed = detached(() =>
        new ThreadFeed(tenant, threadId, this.#options, () => this.#feeds.delete(key), () => this.#draining)
      );
      this.#feeds.set(key, feed);
    }
    feed.retain();
    let released = false;
    const owned = feed;
    return {
      feed: owned,
      release: () => {
        if (released) return;
        released = true;
        owned.releaseOne();
      },
    };
  }

  /**
   * Shutting down: every stream ends (each is woken now, and one that starts or waits
   * later ends at once), so a server can close without waiting out streams that would
   * otherwise last until their maximum lifetime. Clients resume elsewhere.
   */
  drain(): void {
    this.#draining = true;
    for (const feed of this.#feeds.values()) feed.wakeAll();
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Threads with a live feed (for tests of resource hygiene). */
  get size(): number {
    return this.#feeds.size;
  }
}

/**
 * What a feed knows of its thread's log. `unread` until a read has succeeded: a feed
 * whose first reads fail (cache and rollout both unreachable at start) stays there and
 * tries again on every hint and tick, instead of guessing a head.
 */
type FeedState = { known: false } | { known: true; head: number; buffer: LogEvent[] };

/**
 * The shared reader of one thread. Two wake-ups for streams:
 * - `wakeOnNext`: new events were appended (the generation moved);
 * - `wakeOnTick`: a refresh finished, whatever it found, so a stream whose own read
 *   failed tries again no later than the next hint or poll tick.
 * Every refresh ends (a read that does not settle is given up after `readTimeoutMs`),
 * and the poll timer runs until the last stream releases the feed: nothing parks it.
 */
export class ThreadFeed {
  readonly #tenant: string;
  readonly #threadId: string;
  readonly #options: Required<FeedOptions>;
  readonly #onEmpty: () => void;
  /** Whether the feed source is draining: a stream that waits then is woken at once. */
  readonly #draining: () => boolean;
  #refs = 0;
  #state: FeedState = { known: false };
  /** Bumped whenever events are appended (or the head first becomes known). */
  #generation = 0;
  /** Bumped whenever a refresh finishes, successful or not. */
  #ticks = 0;
  #eventWaiters = new Set<() => void>();
  #tickWaiters = new Set<() => void>();
  #refreshing = false;
  #again = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #unsubscribe: (() => void) | undefined;
  #closed = false;

  constructor(
    tenant: string,
    threadId: string,
    options: Required<FeedOptions>,
    onEmpty: () => void,
    draining: () => boolean,
  ) {
    this.#tenant = tenant;
    this.#threadId = threadId;
    this.#options = options;
    this.#onEmpty = onEmpty;
    this.#draining = draining;
    this.#unsubscribe = options.notifier.subscribe(tenant, threadId, () => this.refresh());
    this.#schedulePoll();
    if (options.readAtStart !== false) this.refresh();
  }

  get generation(): number {
    return this.#generation;
  }

  get ticks(): number {
    return this.#ticks;
  }

  /** The highest seq the feed has read, or undefined before its first successful read. */
  get head(): number | undefined {
    return this.#state.known ? this.#state.head : undefined;
  }

  /** Released by its last stream, or its feed source is draining: streams on it should end. */
  get ended(): boolean {
    return this.#closed || this.#draining();
  }

  retain(): void {
    this.#refs++;
  }

  releaseOne(): void {
    if (--this.#refs > 0 || this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#unsubscribe?.();
    this.#state = { known: false };
    this.wakeAll();
    this.#onEmpty();
  }

  /** Events after `cursor` if the buffer holds all of them, else null (read the log directly). */
  fromBuffer(cursor: number): LogEvent[] | null {
    if (!this.#state.known) return null;
    const { head, buffer } = this.#state;
    if (cursor >= head) return [];
    const start = buffer[0]?.seq ?? head + 1;
    if (cursor + 1 < start) return null;
    return buffer.slice(cursor + 1 - start);
  }

  /**
   * Calls `wake` once the generation moves past `seen` (at once if it already has, or
   * the feed is closed or draining). Taking `seen` before reading means an append
   * between the read and the wait is not missed. Pass the same function every time (it
   * is registered at most once, with no timer per wait) and `stopWaiting` it when done.
   */
  wakeOnNext(seen: number, wake: () => void): void {
    if (this.#generation !== seen || this.#closed || this.#draining()) wake();
    else this.#eventWaiters.add(wake);
  }

  /** Calls `wake` once a refresh finishes after tick `seen` (see `wakeOnNext`). */
  wakeOnTick(seen: number, wake: () => void): void {
    if (this.#ticks !== seen || this.#closed || this.#draining()) wake();
    else this.#tickWaiters.add(wake);
  }

  /** Wakes every waiting stream (new events, or the feed source is draining). */
  wakeAll(): void {
    wakeEach(this.#eventWaiters);
    wakeEach(this.#tickWaiters);
  }

  stopWaiting(wake: () => void): void {
    this.#eventWaiters.delete(wake);
    this.#tickWaiters.delete(wake);
  }

  /** Reads the log past the head; single-flight, re-run once if asked again meanwhile. */
  refresh(): void {
    if (this.#closed) return;
    if (this.#refreshing) {
      this.#again = true;
      return;
    }
    this.#refreshing = true;
    void detached(() => this.#readNew())
      .catch((error: unknown) => this.#options.onError(error))
      .finally(() => {
        this.#refreshing = false;
        this.#ticks++;
        wakeEach(this.#tickWaiters);
        if (this.#again) {
          this.#again = false;
          this.refresh();
        }
      });
  }

  async #readNew(): Promise<void> {
    const { reader, batchSize, bufferSize, readTimeoutMs } = this.#options;
    if (!this.#state.known) {
      const head = await withDeadline(reader.head(this.#tenant, this.#threadId), readTimeoutMs, "event log read");
      if (this.#closed) return;
      // A push may have made the head known meanwhile: it is newer than this read.
      if (!this.#state.known) {
        this.#state = { known: true, head, buffer: [] };
        this.#wakeStreams();
      }
    }
    for (;;) {
      if (this.#closed || !this.#state.known) return;
      const head: number = this.#state.head;
      const events: LogEvent[] = await withDeadline(
        reader.readEvents(this.#tenant, this.#threadId, head, batchSize),
        readTimeoutMs,
        "event log read",
      );
      // Closed meanwhile, or a contract breach (not the continuation of the head): drop it.
      if (this.#closed || !this.#state.known || this.#state.head !== head) return;
      if (events.length === 0) return;
      const first = events[0] as LogEvent;
      // A tombstone may follow any earlier seq (the life before it is gone); anything else must continue the head.
      if (first.seq !== head + 1 && !(first.event === "thread-deleted" && first.seq > head)) {
        throw new Error(`event log of ${this.#threadId} skipped from ${head} to ${(events[0] as LogEvent).seq}`);
      }
      // The buffer is contiguous: after a jump to a tombstone it starts afresh there.
      let buffer: LogEvent[] = first.seq === head + 1 ? this.#state.buffer.concat(events) : [...events];
      buffer = bounded(buffer, bufferSize, this.#options.bufferChars);
      this.#state = { known: true, head: (events[events.length - 1] as LogEvent).seq, buffer };
      this.#wakeStreams();
      if (events.length < batchSize) return;
    }
  }

  /**
   * Events handed over by the thread's sequencer (Workers: pushed over a WebSocket), so
   * the feed need not read them. What continues the head is appended; what is already
   * known is dropped; a batch after a gap (a push missed) starts the buffer afresh, and
   * streams behind it read the log themselves, as for any stream behind the buffer.
   */
  push(events: readonly LogEvent[]): void {
    if (this.#closed) return;
    const head = this.#state.known ? this.#state.head : 0;
    const fresh = events.filter((event) => event.seq > head);
    const first = fresh[0];
    const last = fresh[fresh.length - 1];
    if (!first || !last) return;
    const continues = this.#state.known && first.seq === head + 1;
    let buffer: LogEvent[] = continues && this.#state.known ? this.#state.buffer.concat(fresh) : [...fresh];
    buffer = bounded(buffer, this.#options.bufferSize, this.#options.bufferChars);
    this.#state = { known: true, head: last.seq, buffer };
    this.#wakeStreams();
  }

  /**
   * The thread's head as its sequencer knows it (Workers: the push link's greeting, sent
   * once the link is up, so every commit after it is pushed). What is past the feed's head
   * up to it was committed before the link: streams read it from the log (the buffer
   * starts afresh after it). Never moves the head back.
   */
  learnHead(head: number): void {
    if (this.#closed) return;
    if (this.#state.known && this.#state.head >= head) return;
    this.#state = { known: true, head, buffer: [] };
    this.#wakeStreams();
  }

  #wakeStreams(): void {
    this.#generation++;
    wakeEach(this.#eventWaiters);
  }

  #schedulePoll(): void {
    if (this.#options.pollMs <= 0) return;
    this.#timer = setTimeout(() => {
      if (this.#closed) return;
      this.#schedulePoll();
      this.refresh();
    }, this.#options.pollMs);
  }
}

function wakeEach(waiters: Set<() => void>): void {
  const woken = [...waiters];
  waiters.clear();
  for (const wake of woken) wake();
}

/** The newest events of `buffer` within `count` events and `chars` characters of data (the newest always). */
function bounded(buffer: LogEvent[], count: number, chars: number): LogEvent[] {
  let start = Math.max(0, buffer.length - count);
  let total = 0;
  for (let i = buffer.length - 1; i >= start; i--) {
    total += (buffer[i] as LogEvent).data.length;
    if (total > chars && i < buffer.length - 1) {
      start = i + 1;
      break;
    }
  }
  return start === 0 ? buffer : buffer.slice(start);
}
