/**
 * Test-side tools for the live stream, independent of src/client so the service's
 * stream is checked against the spec rather than against our own client:
 * - `SpecSseParser`: the WHATWG "event stream interpretation" (HTML §9.2.6), written
 *   from the spec; it also records every raw line, comment and `retry:` field.
 * - `SseConnection`: one real HTTP stream read incrementally, with waits on
 *   conditions bounded by deadlines (never sleeps).
 * Any other wait is `waitFor` of test/support/wait.ts.
 */
import type { ArtifactEvent } from "../../src/model/patch.ts";
import { DEFAULT_TIMEOUT_MS } from "./wait.ts";

export interface SpecEvent {
  /** The last event ID buffer at dispatch time (the spec's `lastEventId`). */
  lastEventId: string;
  type: string;
  data: string;
}

export class SpecSseParser {
  readonly events: SpecEvent[] = [];
  readonly comments: string[] = [];
  readonly retries: number[] = [];
  /** Every line, in order, as the spec splits them (CRLF, CR or LF). */
  readonly lines: string[] = [];
  /** The order in which things happened: "retry", "comment", "event". */
  readonly sequence: Array<"retry" | "comment" | "event"> = [];
  #buffer = "";
  #pendingCarriageReturn = false;
  #first = true;
  #data = "";
  #eventType = "";
  #lastEventId = "";

  push(chunk: string): void {
    let text = chunk;
    if (this.#first && text.length > 0) {
      this.#first = false;
      if (text.startsWith("\uFEFF")) text = text.slice(1);
    }
    if (this.#pendingCarriageReturn && text.startsWith("\n")) text = text.slice(1);
    this.#pendingCarriageReturn = false;
    // Only the new text can hold line ends: the kept buffer is a partial line.
    let i = this.#buffer.length;
    this.#buffer += text;
    let start = 0;
    while (i < this.#buffer.length) {
      const ch = this.#buffer[i];
      if (ch === "\r" || ch === "\n") {
        this.#processLine(this.#buffer.slice(start, i));
        if (ch === "\r") {
          if (i + 1 === this.#buffer.length) this.#pendingCarriageReturn = true;
          else if (this.#buffer[i + 1] === "\n") i++;
        }
        start = i + 1;
      }
      i++;
    }
    this.#buffer = this.#buffer.slice(start);
  }

  #processLine(line: string): void {
    this.lines.push(line);
    if (line === "") return this.#dispatch();
    if (line.startsWith(":")) {
      this.comments.push(line.slice(1).replace(/^ /, ""));
      this.sequence.push("comment");
      return;
    }
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (name) {
      case "event":
        this.#eventType = value;
        break;
      case "data":
        this.#data += `${value}\n`;
        break;
      case "id":
        if (!value.includes("\u0000")) this.#lastEventId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) {
          this.retries.push(Number(value));
          this.sequence.push("retry");
        }
        break;
      default:
        break;
    }
  }

  #dispatch(): void {
    if (this.#data === "") {
      this.#eventType = "";
      return;
    }
    const data = this.#data.endsWith("\n") ? this.#data.slice(0, -1) : this.#data;
    this.events.push({ lastEventId: this.#lastEventId, type: this.#eventType || "message", data });
    this.sequence.push("event");
    this.#data = "";
    this.#eventType = "";
  }
}

export interface Deadline {
  timeoutMs?: number;
}

/** One `artifact-updated` event as received: the spec parser's view plus its parsed data. */
export interface ReceivedEvent {
  id: string;
  type: string;
  data: string;
  event: ArtifactEvent;
}

/** A real HTTP event stream, read as it arrives. */
export class SseConnection {
  readonly response: Response;
  readonly parser = new SpecSseParser();
  raw = "";
  ended = false;
  error: unknown = undefined;
  readonly #controller: AbortController;
  readonly #listeners = new Set<() => void>();
  readonly #pump: Promise<void>;

  constructor(response: Response, controller: AbortController) {
    this.response = response;
    this.#controller = controller;
    this.#pump = this.#read();
  }

  /** Opens `url` as an event stream; resolves once the response headers are in. */
  static async open(url: string, headers: Record<string, string> = {}): Promise<SseConnection> {
    const controller = new AbortController();
    const response = await fetch(url, {
      headers: { accept: "text/event-stream", ...headers },
      signal: controller.signal,
    });
    return new SseConnection(response, controller);
  }

  readonly #received: ReceivedEvent[] = [];
  #parsedUpTo = 0;

  /** The `artifact-updated` events dispatched so far, data parsed (each parsed once). */
  get events(): ReceivedEvent[] {
    const all = this.parser.events;
    for (; this.#parsedUpTo < all.length; this.#parsedUpTo++) {
      const e = all[this.#parsedUpTo] as SpecEvent;
      if (e.type === "artifact-updated") {
        this.#received.push({
          id: e.lastEventId,
          type: e.type,
          data: e.data,
          event: JSON.parse(e.data) as ArtifactEvent,
        });
      }
    }
    return [...this.#received];
  }

  get seqs(): number[] {
    return this.events.map((e) => e.event.seq);
  }

  /** The id of the last dispatched event ("" before any). */
  get lastEventId(): string {
    return this.parser.events.at(-1)?.lastEventId ?? "";
  }

  async #read(): Promise<void> {
    const body = this.response.body;
    if (!body) {
      this.ended = true;
      return;
    }
    const reader = body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const text = decoder.decode(value, { stream: true });
        this.raw += text;
        this.parser.push(text);
        this.#notify();
      }
    } catch (error) {
      this.error = error;
    } finally {
      this.ended = true;
      this.#notify();
    }
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  /** Resolves when `predicate` holds; rejects at the deadline, or if the stream ends first. */
  until(
    predicate: (c: this) => boolean,
    what: string,
    { timeoutMs = DEFAULT_TIMEOUT_MS }: Deadline = {},
  ): Promise<void> {
    if (predicate(this)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const finish = (error?: Error) => {
        clearTimeout(timer);
        this.#listeners.delete(check);
        if (error) reject(error);
        else resolve();
      };
      const check = () => {
        if (predicate(this)) finish();
        else if (this.ended) finish(new Error(`stream ended before ${what} (seqs ${JSON.stringify(this.seqs)})`));
      };
      const timer = setTimeout(
        () =>
          finish(new Error(`timed out after ${timeoutMs} ms waiting for ${what} (seqs ${JSON.stringify(this.seqs)})`)),
        timeoutMs,
      );
      this.#listeners.add(check);
    });
  }

  /** Waits until an event with seq >= `seq` has arrived. */
  untilSeq(seq: number, options?: Deadline): Promise<void> {
    return this.until((c) => c.seqs.some((s) => s >= seq), `seq ${seq}`, options);
  }

  /** Resolves when the server ends the stream (rejects at the deadline). */
  untilEnded(options?: Deadline): Promise<void> {
    if (this.ended) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timeoutMs = options?.timeoutMs ?? DEFAULT_TIMEOUT_MS;
      const check = () => {
        if (!this.ended) return;
        clearTimeout(timer);
        this.#listeners.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#listeners.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for the stream to end`));
      }, timeoutMs);
      this.#listeners.add(check);
    });
  }

  /** Disconnects (client side) and waits for the read loop to stop. */
  async close(): Promise<void> {
    this.#controller.abort();
    await this.#pump;
  }
}
