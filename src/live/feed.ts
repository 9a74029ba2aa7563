import { threadKey } from "../model/ids.ts";
import type { Notifier } from "./notifier.ts";

/** One entry of a thread's event log: the SSE `id` and the one-line JSON `data`. */
export interface LogEvent {
  seq: number;
  data: string;
}

/** Where streams read the durable event log (the cache's log, or the rollout when the cache is down). */
export interface EventReader {
  /** Events after `afterSeq`, ascending and contiguous, at most `limit`. */
  readEvents(tenant: string, threadId: string, afterSeq: number, limit: number): Promise<LogEvent[]>;
  /** The seq of the thread's last committed patch (0 for a thread with none). */
  head(tenant: string, threadId: string): Promise<number>;
}

export interface FeedOptions {
  reader: EventReader;
  notifier: Notifier;
  /** How often a thread with subscribers re-reads its log without a hint (ms). */
  pollMs: number;
  /** Events kept in memory per thread for subscribers at the head. */
  bufferSize?: number;
  /** Events read per log query. */
  batchSize?: number;
  onError?: (error: unknown) => void;
}

/**
 * One poller per thread per process, however many streams watch it: a hint or a
 * poll tick makes ONE log read, and every stream at the head takes its events from
 * the shared buffer. Streams behind the buffer read the log themselves.
 */
export class FeedHub {
  readonly #options: Required<FeedOptions>;
  readonly #feeds = new Map<string, ThreadFeed>();
  #draining = false;

  constructor(options: FeedOptions) {
    this.#options = { bufferSize: 256, batchSize: 100, onError: () => {}, ...options };
  }

  get batchSize(): number {
    return this.#options.batchSize;
  }

  /** A feed for the thread, kept alive until every acquirer has released it. */
  acquire(tenant: string, threadId: string): { feed: ThreadFeed; release: () => void } {
    const key = threadKey(tenant, threadId);
    let feed = this.#feeds.get(key);
    if (!feed) {
      feed = new ThreadFeed(tenant, threadId, this.#options, () => this.#feeds.delete(key), () => this.#draining);
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

export class ThreadFeed {
  readonly #tenant: string;
  readonly #threadId: string;
  readonly #options: Required<FeedOptions>;
  readonly #onEmpty: () => void;
  #refs = 0;
  /** Highest seq read from the log; -1 until the first read. */
  #head = -1;
  /** Contiguous events ending at #head. */
  #buffer: LogEvent[] = [];
  /** Bumped whenever events are appended; streams wait for it to change. */
  #generation = 0;
  #waiters = new Set<() => void>();
  #refreshing: Promise<void> | null = null;
  #again = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #unsubscribe: (() => void) | undefined;
  #closed = false;
  /** Whether the hub is draining: a stream that waits then is woken at once. */
  readonly #draining: () => boolean;

  constructor(tenant: string, threadId: string, options: Required<FeedOptions>, onEmpty: () => void, draining: () => boolean) {
    this.#draining = draining;
    this.#tenant = tenant;
    this.#threadId = threadId;
    this.#options = options;
    this.#onEmpty = onEmpty;
    this.#unsubscribe = options.notifier.subscribe(tenant, threadId, () => this.refresh());
    this.#schedulePoll();
    this.refresh();
  }

  get generation(): number {
    return this.#generation;
  }

  retain(): void {
    this.#refs++;
  }

  releaseOne(): void {
    if (--this.#refs > 0 || this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#unsubscribe?.();
    this.#buffer = [];
    for (const wake of this.#waiters) wake();
    this.#waiters.clear();
    this.#onEmpty();
  }

  /** Events after `cursor` if the buffer holds all of them, else null (read the log directly). */
  fromBuffer(cursor: number): LogEvent[] | null {
    if (this.#head < 0) return null;
    if (cursor >= this.#head) return [];
    const start = this.#buffer[0]?.seq ?? this.#head + 1;
    if (cursor + 1 < start) return null;
    return this.#buffer.slice(cursor + 1 - start);
  }

  /**
   * Calls `wake` once the generation moves past `seen` (at once if it already has, or the
   * feed is closed). Taking `seen` before reading means an append between the read and
   * the wait is not missed. For a stream's wait loop: pass the same function every time
   * (it is registered at most once, with no timer or listener per wait) and
   * `stopWaiting` it when done.
   */
  wakeOnNext(seen: number, wake: () => void): void {
    if (this.#generation !== seen || this.#closed || this.#draining()) wake();
    else this.#waiters.add(wake);
  }

  /** Wakes every waiting stream (new events, or the hub is draining). */
  wakeAll(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }

  stopWaiting(wake: () => void): void {
    this.#waiters.delete(wake);
  }

  /** Reads the log past the head; single-flight, re-run once if asked again meanwhile. */
  refresh(): void {
    if (this.#closed) return;
    if (this.#refreshing) {
      this.#again = true;
      return;
    }
    this.#refreshing = this.#readNew()
      .catch((error: unknown) => this.#options.onError(error))
      .finally(() => {
        this.#refreshing = null;
        if (this.#again) {
          this.#again = false;
          this.refresh();
        }
      });
  }

  async #readNew(): Promise<void> {
    const { reader, batchSize, bufferSize } = this.#options;
    if (this.#head < 0) {
      this.#head = await reader.head(this.#tenant, this.#threadId);
      this.#wake();
    }
    for (;;) {
      if (this.#closed) return;
      const events = await reader.readEvents(this.#tenant, this.#threadId, this.#head, batchSize);
      if (events.length === 0) return;
      this.#buffer.push(...events);
      if (this.#buffer.length > bufferSize) this.#buffer = this.#buffer.slice(-bufferSize);
      this.#head = (events[events.length - 1] as LogEvent).seq;
      this.#wake();
      if (events.length < batchSize) return;
    }
  }

  #wake(): void {
    this.#generation++;
    this.wakeAll();
  }

  #schedulePoll(): void {
    this.#timer = setTimeout(() => {
      this.refresh();
      if (!this.#closed) this.#schedulePoll();
    }, this.#options.pollMs);
  }
}
