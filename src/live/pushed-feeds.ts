import type { LogEvent } from "../model/patch.ts";
import { DEFAULT_BUFFER_CHARS, type EventReader, type FeedSource, ThreadFeed } from "./feed.ts";
import type { Notifier } from "./notifier.ts";

/** The slice of a WebSocket a push link uses (a Workers WebSocket, a browser one). */
export interface PushSocket {
  addEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
  addEventListener(type: "close" | "error", listener: () => void): void;
  close(code?: number, reason?: string): void;
}

/** One push message: the events of one commit, in seq order. */
export interface PushMessage {
  events: LogEvent[];
}

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
 * another's I/O): each stream gets its own ThreadFeed, fed by its thread's pushes, read
 * from the log only to catch up, after a gap or a lost link, and on a slow safety poll.
 * So an idle stream costs no store request but that poll.
 */
export class PushedFeeds implements FeedSource {
  readonly #options: Required<PushedFeedsOptions>;
  #open = 0;

  constructor(options: PushedFeedsOptions) {
    this.#options = { reconnectMs: 1000, batchSize: 100, readTimeoutMs: 10_000, onError: () => {}, ...options };
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
    return this.#open;
  }

  acquire(tenant: string, threadId: string): { feed: ThreadFeed; release: () => void } {
    const o = this.#options;
    let released = false;
    let socket: PushSocket | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const feed = new ThreadFeed(
      tenant,
      threadId,
      {
        reader: o.reader,
        notifier: NO_HINTS,
        pollMs: o.safetyPollMs,
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
    const link = async () => {
      try {
        const opened = await o.connect(tenant, threadId);
        if (released) return opened.close(1000, "released");
        socket = opened;
        opened.addEventListener("message", (event) => {
          const message = parsePush(event.data);
          if (message) feed.push(message.events);
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
        // Whatever was committed before the link was up is read once.
        feed.refresh();
      } catch (error) {
        o.onError(error);
        if (!released) retry = setTimeout(() => void link(), o.reconnectMs);
      }
    };
    void link();
    this.#open++;
    return {
      feed,
      release: () => {
        if (released) return;
        released = true;
        this.#open--;
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
}

function parsePush(data: unknown): PushMessage | null {
  if (typeof data !== "string") return null;
  try {
    const message = JSON.parse(data) as PushMessage;
    const valid = Array.isArray(message.events) &&
      message.events.every((e) => Number.isSafeInteger(e?.seq) && typeof e?.data === "string");
    return valid ? message : null;
  } catch {
    return null;
  }
}
