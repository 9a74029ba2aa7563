import { createParser, type EventSourceParser } from "eventsource-parser";

/** One dispatched Server-Sent Event, as `EventSource` would see it. */
export interface SseMessage {
  /** The last event ID (WHATWG HTML §9.2.6): it carries over to later events without an `id:`. */
  id: string | undefined;
  /** `message` when the event names no type. */
  event: string;
  data: string;
}

/**
 * An incremental text/event-stream parser: feed it decoded text in chunks of any size;
 * it calls `onMessage` per dispatched event and `onRetry` for `retry:` fields. Parsing
 * is `eventsource-parser`'s; this adds the two things it leaves to `EventSource`: the
 * default event type and the last event ID (it reports only the `id:` of the event's own
 * block). Comments and unknown fields are ignored.
 */
export class SseParser {
  readonly #parser: EventSourceParser;
  #lastEventId: string | undefined;

  constructor(onMessage: (message: SseMessage) => void, onRetry: (ms: number) => void = () => {}) {
    this.#parser = createParser({
      // Called before onEvent, for every block that has an `id:` (with data or not).
      onId: (id) => {
        this.#lastEventId = id;
      },
      onEvent: ({ event, data }) => onMessage({ id: this.#lastEventId, event: event ?? "message", data }),
      onRetry,
    });
  }

  push(chunk: string): void {
    this.#parser.feed(chunk);
  }
}
