/**
 * Finished spans gathered into batches for the export thread, as the spec's batch span
 * processor does (OTEL_BSP_*): a batch goes when it is full or `scheduledDelayMs` after
 * its first span; spans past `maxQueueSize` (gathered, plus sent and not yet exported)
 * are dropped, so a collector that is down or slow costs memory up to that bound only.
 */
import type { SpanRecord } from "./span-record.ts";

export interface SpanBatchesOptions {
  maxQueueSize: number;
  maxExportBatchSize: number;
  scheduledDelayMs: number;
  /** Hands a batch to the export thread; `exported(count)` is called once it is done with it. */
  send: (spans: SpanRecord[]) => void;
  /** Told once when spans start being dropped (again). */
  onDropping: (waiting: number) => void;
}

export class SpanBatches {
  readonly #o: SpanBatchesOptions;
  #batch: SpanRecord[] = [];
  /** Spans sent and not yet exported (or failed). */
  #sent = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #dropping = false;
  #dropped = 0;

  constructor(options: SpanBatchesOptions) {
    this.#o = options;
  }

  /** Spans dropped so far because the queue was full. */
  get dropped(): number {
    return this.#dropped;
  }

  add(span: SpanRecord): void {
    const waiting = this.#batch.length + this.#sent;
    if (waiting >= this.#o.maxQueueSize) {
      this.#dropped++;
      if (!this.#dropping) {
        this.#dropping = true;
        this.#o.onDropping(waiting);
      }
      return;
    }
    this.#dropping = false;
    this.#batch.push(span);
    if (this.#batch.length >= this.#o.maxExportBatchSize) {
      this.flush();
    } else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), this.#o.scheduledDelayMs);
      (this.#timer as { unref?: () => void }).unref?.();
    }
  }

  /** The export thread is done with `count` spans (exported or failed). */
  exported(count: number): void {
    this.#sent = Math.max(0, this.#sent - count);
  }

  /** Sends what is gathered now. */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#batch.length === 0) return;
    const batch = this.#batch;
    this.#batch = [];
    this.#sent += batch.length;
    this.#o.send(batch);
  }
}
