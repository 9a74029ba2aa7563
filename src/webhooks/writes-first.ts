/**
 * Writes first: webhook deliveries run on the server's own event loop, and one costs about
 * one create or more (the message, its signature, a log read, the POST, a cursor: ~0.8 ms
 * of CPU measured on a 2-core machine). So while the server is busy serving requests
 * (more than `busyAbove` in flight, and for `coolMs` after), deliveries pass one at a time
 * at most every `floorMs` (25 a second by default: ~2% of a core), and at full speed again
 * once it is not. Under a sustained load a server commits far more events than either
 * rate could deliver, so the floor decides what the writes pay, not whether the webhooks
 * keep up; the backlog goes out at full speed when the load ends. Nothing is dropped: what
 * waits is in the log, and `artifacts_webhook_backlog_events` /
 * `artifacts_webhook_oldest_undelivered_seconds` show how far behind they are. A write
 * never waits for a delivery either way.
 */
export interface DeliveryGate {
  /** Resolves when a delivery may go (at once when the server is not busy). */
  pass(): Promise<void>;
}

export interface WritesFirstOptions {
  /** Requests in flight above which the server counts as busy (default 4). */
  busyAbove?: number;
  /**
   * How long the server stays busy after it last had more than `busyAbove` in flight
   * (default 200 ms): clients of a loaded server leave gaps between a response and their
   * next request, and a gate that opened in each gap let every waiting delivery through
   * (measured: 2,081 deliveries/s beside 483 creates/s, 0.24x of the creates without webhooks).
   */
  coolMs?: number;
  /** While busy, at most one delivery per this many ms (default 40). */
  floorMs?: number;
  now?: () => number;
  unref?: (timer: ReturnType<typeof setTimeout>) => void;
}

export class WritesFirst implements DeliveryGate {
  readonly #busyAbove: number;
  readonly #coolMs: number;
  readonly #floorMs: number;
  readonly #now: () => number;
  readonly #unref: (timer: ReturnType<typeof setTimeout>) => void;
  #inFlight = 0;
  /** Busy until then at least (see coolMs). */
  #busyUntil = 0;
  readonly #waiting: (() => void)[] = [];
  #floorTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: WritesFirstOptions = {}) {
    this.#busyAbove = options.busyAbove ?? 4;
    this.#coolMs = options.coolMs ?? 200;
    this.#floorMs = options.floorMs ?? 40;
    this.#now = options.now ?? Date.now;
    this.#unref = options.unref ?? (() => {});
  }

  get busy(): boolean {
    return this.#inFlight > this.#busyAbove || this.#now() < this.#busyUntil;
  }

  /** Counts `serve`'s request while it runs (until its response: a stream counts until its headers). */
  async track<T>(serve: () => Promise<T>): Promise<T> {
    this.#inFlight++;
    if (this.#inFlight > this.#busyAbove) this.#busyUntil = this.#now() + this.#coolMs;
    try {
      return await serve();
    } finally {
      this.#inFlight--;
      if (!this.busy) this.#releaseAll();
    }
  }

  pass(): Promise<void> {
    if (!this.busy && this.#waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      this.#armFloor();
    });
  }

  /** While busy, one waiting delivery every floorMs. */
  #armFloor(): void {
    if (this.#floorTimer !== undefined) return;
    this.#floorTimer = setTimeout(() => {
      this.#floorTimer = undefined;
      if (!this.busy) return this.#releaseAll();
      this.#waiting.shift()?.();
      if (this.#waiting.length > 0) this.#armFloor();
    }, this.#floorMs);
    this.#unref(this.#floorTimer);
  }

  #releaseAll(): void {
    for (const resolve of this.#waiting.splice(0)) resolve();
  }
}
