import { threadKey } from "../model/ids.ts";

/** A thread's seq and artifact count at one moment of its rollout. */
export interface ThreadHead {
  seq: number;
  artifactCount: number;
}

/**
 * The head of each thread as this process last committed (or confirmed) it, most
 * recently used first, bounded. Never the truth on its own: a write decided on it
 * appends put-if-absent at seq + 1, so a head another process has moved past shows
 * up as a lost race, and the writer asks the cache again. A head older than
 * `freshForMs` is forgotten: the keys of a deleted life stay occupied only for a
 * retention period, and a head that old may point into one.
 *
 * A thread other processes write too is not remembered for a while after such a race:
 * there a head is usually stale, and a stale guess costs a wasted put (its fsync
 * included), more than the cache read it saves.
 */
export class KnownHeads {
  readonly #heads = new Map<string, ThreadHead & { at: number }>();
  /** Threads found shared, until when (ms) their heads are not remembered. */
  readonly #shared = new Map<string, number>();
  readonly #max: number;
  readonly #sharedForMs: number;
  readonly #freshForMs: number;
  readonly #now: () => number;

  constructor(options: { max: number; sharedForMs: number; freshForMs?: number; now?: () => number }) {
    this.#max = options.max;
    this.#sharedForMs = options.sharedForMs;
    this.#freshForMs = options.freshForMs ?? Infinity;
    this.#now = options.now ?? Date.now;
  }

  get(tenant: string, threadId: string): ThreadHead | undefined {
    const key = threadKey(tenant, threadId);
    const head = this.#heads.get(key);
    if (!head) return undefined;
    if (this.#now() - head.at > this.#freshForMs) {
      this.#heads.delete(key);
      return undefined;
    }
    return { seq: head.seq, artifactCount: head.artifactCount };
  }

  remember(tenant: string, threadId: string, head: ThreadHead): void {
    const key = threadKey(tenant, threadId);
    const sharedUntil = this.#shared.get(key);
    if (sharedUntil !== undefined) {
      if (this.#now() < sharedUntil) return;
      this.#shared.delete(key);
    }
    // Re-inserted at the end: Map order is the recency order.
    this.#heads.delete(key);
    this.#heads.set(key, { seq: head.seq, artifactCount: head.artifactCount, at: this.#now() });
    evictOldest(this.#heads, this.#max);
  }

  forget(tenant: string, threadId: string): void {
    this.#heads.delete(threadKey(tenant, threadId));
  }

  /** Another process wrote the thread: forget its head, and do not remember one for a while. */
  shared(tenant: string, threadId: string): void {
    const key = threadKey(tenant, threadId);
    this.#heads.delete(key);
    this.#shared.delete(key);
    this.#shared.set(key, this.#now() + this.#sharedForMs);
    evictOldest(this.#shared, this.#max);
  }
}

function evictOldest(map: Map<string, unknown>, max: number): void {
  if (map.size > max) map.delete(map.keys().next().value as string);
}
