import { threadKey } from "../model/ids.ts";
import type { LogEvent } from "../model/patch.ts";
import { DEFAULT_BUFFER_CHARS, type EventReader, type FeedSource, ThreadFeed } from "./feed.ts";
import type { Notifier } from "./notifier.ts";

/** The slice of a WebSocket a push link uses (a Workers WebSocket, a browser one). */
export interface PushSocket {
  addEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
  addEventListener(type: "close" | "error", listener: () => void): void;
  close(code?: number, reason?: string): void;
}

/**
 * What the thread's sequencer sends over a push link: first its greeting, the thread's
 * head once the link is up (every commit after it is pushed), then the events of each
 * commit, in seq order.
 */
export type PushMessage = { head: number } | { events: LogEvent[] };

export interface PushedFeedsOptions {
  reader: EventReader;
  /** Opens the push link of a thread (Workers: a WebSocket to its sequencer). */
  connect: (tenant: string, threadId: string) => Promise<PushSocket>;
  /**
   * The safety poll: how often a stream reads its log even when nothing was pushed (ms).
   * Pushes carry the events, so this only covers what a push could miss (a writer that
   * bypasses the sequencer): slow, to keep an idle stream's store requests near zero.
   */
  safetyPollMs: number;
  /** Wait before connecting again after the link dropped (ms); the log is read meanwhile. */
  reconnectMs?: number;
  batchSize?: number;
  readTimeoutMs?: number;
  onError?: (error: unknown) => void;
}

/** Pushes carry events: nobody hints a pushed feed. */
const NO_HINTS: Notifier = { notify() {}, subscribe: () => () => {}, close() {} };

/**
 * Feeds for runtimes where every stream is on its own (Workers: a request may not touch
 * another's I/O): each stream gets its own ThreadFeed per thread, fed by its thread's
 * pushes, told its head by the link's greeting (no store read for it), and read from the
 * log only to catch up, after a gap or a lost link, and on a slow safety poll. The log
 * reads of one stream's threads made in one turn go to the cache as ONE query
 * (`GatheredReads`): a stream of N threads catches up, and polls, in one round trip.
 * So an idle stream costs one libSQL request per safety poll, whatever its threads.
 */
export class PushedFeeds implements FeedSource {
  readonly #options: Required<Omit<PushedFeedsOptions, "reader">>;
  readonly #reads: GatheredReads;
  /** The open feeds by thread (a stream follows each of its threads once). */
  readonly #feeds = new Map<string, ThreadFeed[]>();
  #poll: ReturnType<typeof setTimeout> | undefined;

  constructor(options: PushedFeedsOptions) {
    const { reader, ...rest } = options;
    this.#options = { reconnectMs: 1000, batchSize: 100, readTimeoutMs: 10_000, onError: () => {}, ...rest };
    this.#reads = new GatheredReads(
      reader,
      (tenant, threadId) => this.#feeds.get(threadKey(tenant, threadId))?.[0]?.head,
    );
  }

  /** The reader streams on these feeds read the log through: gathered per turn into one query. */
  get reader(): EventReader {
    return this.#reads;
  }

  get batchSize(): number {
    return this.#options.batchSize;
  }

  get readTimeoutMs(): number {
    return this.#options.readTimeoutMs;
  }

  /** Nothing outlives a request here: nothing to drain. */
  get draining(): boolean {
    return false;
  }

  drain(): void {}

  /** Feeds acquired and not released yet (one per stream and thread). */
  get size(): number {
    let open = 0;
    for (const feeds of this.#feeds.values()) open += feeds.length;
    return open;
  }

  acquire(tenant: string, threadId: string): { feed: ThreadFeed; release: () => void } {
    const o = this.#options;
    const key = threadKey(tenant, threadId);
    let released = false;
    let socket: PushSocket | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const feed = new ThreadFeed(
      tenant,
      threadId,
      {
        reader: this.#reads,
        notifier: NO_HINTS,
        // Polled with the others, together (one gathered read): see #schedulePoll.
        pollMs: 0,
        // The link's greeting tells the head; a link that cannot be made falls back to reading it.
        readAtStart: false,
        bufferSize: 256,
        bufferChars: DEFAULT_BUFFER_CHARS,
        batchSize: o.batchSize,
        readTimeoutMs: o.readTimeoutMs,
        onError: o.onError,
      },
      () => {},
      () => false,
    );
    feed.retain();
    this.#feeds.set(key, [...(this.#feeds.get(key) ?? []), feed]);
    this.#schedulePoll();
    const link = async () => {
      try {
        const opened = await o.connect(tenant, threadId);
        if (released) return opened.close(1000, "released");
        socket = opened;
        opened.addEventListener("message", (event) => {
          const message = parsePush(event.data);
          if (!message) return;
          // The greeting: whatever was committed before the link was up is read from the log by the streams behind it.
          if ("head" in message) feed.learnHead(message.head);
          else feed.push(message.events);
        });
        let dropped = false;
        const drop = () => {
          if (dropped || released) return;
          dropped = true;
          socket = undefined;
          // What was pushed while the link was down is read from the log, then the link comes back.
          feed.refresh();
          retry = setTimeout(() => void link(), o.reconnectMs);
        };
        opened.addEventListener("close", drop);
        opened.addEventListener("error", drop);
      } catch (error) {
        o.onError(error);
        // No greeting: a head not known yet is read from the store; the link is tried again.
        if (feed.head === undefined) feed.refresh();
        if (!released) retry = setTimeout(() => void link(), o.reconnectMs);
      }
    };
    void link();
    return {
      feed,
      release: () => {
        if (released) return;
        released = true;
        const left = (this.#feeds.get(key) ?? []).filter((open) => open !== feed);
        if (left.length > 0) this.#feeds.set(key, left);
        else this.#feeds.delete(key);
        if (this.#feeds.size === 0) {
          clearTimeout(this.#poll);
          this.#poll = undefined;
        }
        clearTimeout(retry);
        try {
          socket?.close(1000, "stream ended");
        } catch {
          // Already closed.
        }
        feed.releaseOne();
      },
    };
  }

  /**
   * The safety poll: every `safetyPollMs` while a feed is open, every open feed reads
   * past its head at once, so their reads are gathered into one query (not one per
   * thread, as a timer per feed would make).
   */
  #schedulePoll(): void {
    if (this.#poll !== undefined) return;
    this.#poll = setTimeout(() => {
      this.#poll = undefined;
      if (this.#feeds.size === 0) return;
      for (const feeds of this.#feeds.values()) for (const feed of feeds) feed.refresh();
      this.#schedulePoll();
    }, this.#options.safetyPollMs);
  }
}

/**
 * A request's log reads, gathered: the reads asked for in one turn (a stream's followers
 * catching up together, its feeds' safety poll) go to the reader's `readEventsMany` as
 * one query per tenant, each with the head its feed learnt from the sequencer (an empty
 * page short of it is read from the rollout). A reader without `readEventsMany` is read
 * thread by thread.
 */
export class GatheredReads implements EventReader {
  readonly #reader: EventReader;
  readonly #headOf: (tenant: string, threadId: string) => number | undefined;
  #pending: PendingRead[] = [];

  constructor(reader: EventReader, headOf: (tenant: string, threadId: string) => number | undefined) {
    this.#reader = reader;
    this.#headOf = headOf;
  }

  readEvents(tenant: string, threadId: string, afterSeq: number, limit: number): Promise<LogEvent[]> {
    if (!this.#reader.readEventsMany) return this.#reader.readEvents(tenant, threadId, afterSeq, limit);
    return new Promise((resolve, reject) => {
      this.#pending.push({ tenant, threadId, afterSeq, limit, resolve, reject });
      if (this.#pending.length === 1) queueMicrotask(() => this.#flush());
    });
  }

  head(tenant: string, threadId: string): Promise<number> {
    return this.#reader.head(tenant, threadId);
  }

  #flush(): void {
    const reads = this.#pending;
    this.#pending = [];
    const groups = new Map<string, PendingRead[]>();
    for (const read of reads) {
      const key = `${read.limit}\u0000${read.tenant}`;
      const group = groups.get(key);
      if (group) group.push(read);
      else groups.set(key, [read]);
    }
    for (const group of groups.values()) {
      const { tenant, limit } = group[0] as PendingRead;
      const many = group.map(({ threadId, afterSeq }) => {
        const head = this.#headOf(tenant, threadId);
        return head === undefined ? { threadId, afterSeq } : { threadId, afterSeq, head };
      });
      (this.#reader.readEventsMany as NonNullable<EventReader["readEventsMany"]>)(tenant, many, limit).then(
        (pages) => group.forEach((read, i) => read.resolve(pages[i] ?? [])),
        (error: unknown) => group.forEach((read) => read.reject(error)),
      );
    }
  }
}

interface PendingRead {
  tenant: string;
  threadId: string;
  afterSeq: number;
  limit: number;
  resolve: (events: LogEvent[]) => void;
  reject: (error: unknown) => void;
}

function parsePush(data: unknown): PushMessage | null {
  if (typeof data !== "string") return null;
  try {
    const message = JSON.parse(data) as { head?: unknown; events?: unknown };
    if (typeof message.head === "number" && Number.isSafeInteger(message.head)) return { head: message.head };
    const valid = Array.isArray(message.events) &&
      (message.events as Partial<LogEvent>[]).every((e) => Number.isSafeInteger(e?.seq) && typeof e?.data === "string");
    return valid ? { events: message.events as LogEvent[] } : null;
  } catch {
    return null;
  }
}
