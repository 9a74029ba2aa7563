/**
 * Finished spans gathered into batches for the export, as the spec's batch span
 * processor does (OTEL_BSP_*): a batch goes when it is full or `scheduledDelayMs` after
 * its first span; spans past `maxQueueSize` (gathered, plus sent and not yet exported)
 * are dropped, so a collector that is down or slow costs memory up to that bound only.
 */
import type { SpanRecord } from "./span-record.ts";

/** Where a batch's spans are gathered: as records, or already encoded (otlp-protobuf.ts). */
export interface SpanGather<B> {
  add(span: SpanRecord): void;
  /** The batch of the spans added since the last take; starts a new one. */
  take(): B;
}

/** Spans gathered as their records (for an encoding that needs a whole batch: `http/json`). */
export class SpanList implements SpanGather<SpanRecord[]> {
  #spans: SpanRecord[] = [];

  add(span: SpanRecord): void {
    this.#spans.push(span);
  }

  take(): SpanRecord[] {
    const spans = this.#spans;
    this.#spans = [];
    return spans;
  }
}

export interface SpanBatchesOptions<B> {
  maxQueueSize: number;
  maxExportBatchSize: number;
  scheduledDelayMs: number;
  gather: SpanGather<B>;
  /** Hands a batch of `count` spans to the export; `exported(count)` is called once it is done with it. */
  send: (batch: B, count: number) => void;
  /** Told once when spans start being dropped (again). */
  onDropping: (waiting: number) => void;
}

export class SpanBatches<B> {
  readonly #o: SpanBatchesOptions<B>;
  /** Spans gathered for the next batch. */
  #gathered = 0;
  /** Spans sent and not yet exported (or failed). */
  #sent = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #dropping = false;
  #dropped = 0;

  constructor(options: SpanBatchesOptions<B>) {
    this.#o = options;
  }

  /** Spans dropped so far because the queue was full. */
  get dropped(): number {
    return this.#dropped;
  }

  add(span: SpanRecord): void {
    const waiting = this.#gathered + this.#sent;
    if (waiting >= this.#o.maxQueueSize) {
      this.#dropped++;
      if (!this.#dropping) {
        this.#dropping = true;
        this.#o.onDropping(waiting);
      }
      return;
    }
    this.#dropping = false;
    this.#o.gather.add(span);
    if (++this.#gathered >= this.#o.maxExportBatchSize) {
      this.flush();
    } else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), this.#o.scheduledDelayMs);
      (this.#timer as { unref?: () => void }).unref?.();
    }
  }

  /** The export is done with `count` spans (exported or failed). */
  exported(count: number): void {
    this.#sent = Math.max(0, this.#sent - count);
  }

  /** Sends what is gathered now. */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const count = this.#gathered;
    if (count === 0) return;
    this.#gathered = 0;
    this.#sent += count;
    this.#o.send(this.#o.gather.take(), count);
  }
}
