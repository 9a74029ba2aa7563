import type { BlobStore, ListOptions, PutIfAbsentResult } from "../../src/blob/port.ts";

export type BlobOp = "get" | "putIfAbsent" | "put" | "exists" | "delete" | "list";

export interface FaultSettings {
  /** Share of calls (0..1) that fail before reaching the store: nothing happened. */
  errorRate: number;
  /**
   * Share of calls that fail AFTER the store did the work: a lost response (the write
   * landed, the caller cannot know). Only meaningful for writes, applied to every op.
   */
  lostResponseRate: number;
  /** Share of calls delayed by a random 0..maxDelayMs before they run (latency spikes). */
  delayRate: number;
  maxDelayMs: number;
  /** The store answers nothing at all: every call fails. */
  down: boolean;
  /** Only these operations get faults (default: all). */
  ops: readonly BlobOp[];
}

export class InjectedFault extends Error {
  constructor(op: BlobOp, key: string, after: boolean) {
    super(`injected ${after ? "lost response" : "failure"}: ${op} ${key}`);
    this.name = "InjectedFault";
  }
}

const ALL_OPS: readonly BlobOp[] = ["get", "putIfAbsent", "put", "exists", "list"];

/**
 * A BlobStore wrapper that injects errors, lost responses and delays on a configurable
 * share of calls, from a seeded generator (mulberry32), so a run's fault decisions are
 * reproducible for a given order of calls. Counts what it did.
 */
export class FaultyBlobStore implements BlobStore {
  readonly inner: BlobStore;
  readonly stats = { calls: 0, errors: 0, lostResponses: 0, delays: 0 };
  #settings: FaultSettings;
  #random: () => number;

  constructor(inner: BlobStore, seed: number, settings: Partial<FaultSettings> = {}) {
    this.inner = inner;
    this.#random = mulberry32(seed);
    this.#settings = {
      errorRate: 0,
      lostResponseRate: 0,
      delayRate: 0,
      maxDelayMs: 0,
      down: false,
      ops: ALL_OPS,
      ...settings,
    };
  }

  /** Changes some settings from now on (e.g. `{ down: true }`, or every rate back to 0). */
  configure(settings: Partial<FaultSettings>): void {
    this.#settings = { ...this.#settings, ...settings };
  }

  get(key: string): Promise<string | null> {
    return this.#call("get", key, () => this.inner.get(key));
  }

  putIfAbsent(key: string, body: string): Promise<PutIfAbsentResult> {
    return this.#call("putIfAbsent", key, () => this.inner.putIfAbsent(key, body));
  }

  put(key: string, body: string): Promise<void> {
    return this.#call("put", key, () => this.inner.put(key, body));
  }

  exists(key: string): Promise<boolean> {
    return this.#call("exists", key, () => this.inner.exists(key));
  }

  delete(key: string): Promise<void> {
    return this.#call("delete", key, () => this.inner.delete(key));
  }

  list(prefix: string, options?: ListOptions): Promise<string[]> {
    return this.#call("list", prefix, () => this.inner.list(prefix, options));
  }

  async #call<T>(op: BlobOp, key: string, run: () => Promise<T>): Promise<T> {
    this.stats.calls++;
    const s = this.#settings;
    if (s.down) {
      this.stats.errors++;
      throw new InjectedFault(op, key, false);
    }
    const faulty = s.ops.includes(op);
    // Draw every number on every call, so the sequence does not depend on the rates.
    const [delayDraw, delayMs, errorDraw, lostDraw] = [this.#random(), this.#random(), this.#random(), this.#random()];
    if (faulty && delayDraw < s.delayRate && s.maxDelayMs > 0) {
      this.stats.delays++;
      await new Promise((resolve) => setTimeout(resolve, Math.floor(delayMs * s.maxDelayMs)));
    }
    if (faulty && errorDraw < s.errorRate) {
      this.stats.errors++;
      throw new InjectedFault(op, key, false);
    }
    const result = await run();
    if (faulty && lostDraw < s.lostResponseRate) {
      this.stats.lostResponses++;
      throw new InjectedFault(op, key, true);
    }
    return result;
  }
}

/** A small seeded PRNG: uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
