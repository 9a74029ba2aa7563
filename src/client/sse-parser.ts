/** One dispatched Server-Sent Event. */
export interface SseMessage {
  id: string | undefined;
  event: string;
  data: string;
}

/**
 * An incremental parser for the text/event-stream format (WHATWG HTML §9.2.6): feed it
 * decoded text in chunks of any size; it calls `onMessage` per dispatched event and
 * `onRetry` for `retry:` fields. Comments and unknown fields are ignored.
 */
export class SseParser {
  #buffer = "";
  #data: string[] = [];
  #event = "";
  #id: string | undefined;
  #sawCarriageReturn = false;
  readonly #onMessage: (message: SseMessage) => void;
  readonly #onRetry: (ms: number) => void;

  constructor(onMessage: (message: SseMessage) => void, onRetry: (ms: number) => void = () => {}) {
    this.#onMessage = onMessage;
    this.#onRetry = onRetry;
  }

  push(chunk: string): void {
    // An empty chunk carries nothing, and must not forget a CR that ended the last one.
    if (chunk === "") return;
    let text = chunk;
    // A CRLF split across chunks: the LF belongs to the CR already handled.
    if (this.#sawCarriageReturn && text.startsWith("\n")) text = text.slice(1);
    this.#sawCarriageReturn = false;
    this.#buffer += text;
    let start = 0;
    for (let i = 0; i < this.#buffer.length; i++) {
      const ch = this.#buffer[i];
      if (ch !== "\n" && ch !== "\r") continue;
      this.#line(this.#buffer.slice(start, i));
      if (ch === "\r") {
        if (i + 1 < this.#buffer.length) {
          if (this.#buffer[i + 1] === "\n") i++;
        } else {
          this.#sawCarriageReturn = true;
        }
      }
      start = i + 1;
    }
    this.#buffer = this.#buffer.slice(start);
  }

  #line(line: string): void {
    if (line === "") {
      this.#dispatch();
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "data":
        this.#data.push(value);
        break;
      case "event":
        this.#event = value;
        break;
      case "id":
        if (!value.includes("\u0000")) this.#id = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.#onRetry(Number(value));
        break;
    }
  }

  #dispatch(): void {
    if (this.#data.length > 0) {
      this.#onMessage({ id: this.#id, event: this.#event || "message", data: this.#data.join("\n") });
    }
    this.#data = [];
    this.#event = "";
  }
}
