import type { ThreadState } from "../model/artifact.ts";
import { threadKey } from "../model/ids.ts";
import { materialize } from "../model/materialize.ts";
import type { Metrics } from "../model/metrics.ts";
import { type Commit, patchesOf } from "../model/patch.ts";
import { detached } from "../model/tracing.ts";
import type { ArtifactCache } from "../cache/port.ts";
import type { Rollout } from "../rollout/rollout.ts";
import type { CacheGuard } from "./cache-guard.ts";

/** What `repairThread` did to one thread's cache. */
export interface RepairResult {
  /** The cached seq before (0: the cache had no row for the thread). */
  cachedSeq: number;
  /** The cached seq after: the rollout head when the repair was checked. */
  seq: number;
}

export interface RepairerOptions {
  rollout: Rollout;
  /** Repairs call the cache directly: their callers decide what a failure means. */
  cache: ArtifactCache;
  /** The background repair's calls go through it (a cache still down is logged once). */
  guard: CacheGuard;
  /**
   * How often threads whose cache fell behind during a libSQL outage are repaired in the
   * background (ms); 0 turns it off (Workers: nothing outlives a request there, and the
   * next write or strong read repairs instead).
   */
  repairBehindEveryMs: number;
  /** Lets the background repair's timer not keep the process alive (the runtime knows how). */
  unref?: (timer: ReturnType<typeof setTimeout>) => void;
  /** Each repair that moved a thread's cache forward is counted here. */
  metrics: Metrics;
}

/** Threads the background repair remembers at most (past it, rebuild or the next read repairs). */
const MAX_BEHIND = 10_000;

/** Repairs `repairThread` tries before it reports a cache that will not catch up. */
const REPAIR_ATTEMPTS = 3;

/**
 * Brings a thread's cache to its rollout head: the one place that knows how. A cache
 * that has the thread gets the commits after its seq; one that has never seen it is
 * installed from the compacted base (snapshot + deltas) and then gets the tail. Every
 * apply is guarded in the cache, so a repairer racing a writer or another repairer only
 * skips what is already there. Cache failures are thrown to the caller, which decides
 * (the write path falls back to the rollout, rebuild reports them).
 */
export class CacheRepairer {
  readonly #rollout: Rollout;
  readonly #cache: ArtifactCache;
  readonly #guard: CacheGuard;
  readonly #repairBehindEveryMs: number;
  readonly #unref: (timer: ReturnType<typeof setTimeout>) => void;
  readonly #metrics: Metrics;
  /** Threads this process wrote while the cache could not take the commits. */
  readonly #behind = new Map<string, { tenant: string; threadId: string }>();
  #repairTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: RepairerOptions) {
    this.#rollout = options.rollout;
    this.#cache = options.cache;
    this.#guard = options.guard;
    this.#repairBehindEveryMs = options.repairBehindEveryMs;
    this.#unref = options.unref ?? (() => {});
    this.#metrics = options.metrics;
  }

  /**
   * Brings the cache from `cachedSeq` (a commit boundary) to the head without reading
   * the cached thread, whose size grows with the thread: `known` are commits after
   * `cachedSeq` the caller already read (a writer catching up after a lost race).
   */
  async repairFrom(tenant: string, threadId: string, cachedSeq: number, known?: readonly Commit[]): Promise<void> {
    const cache = this.#cache;
    if (cachedSeq > 0) {
      const tail = known ?? (await this.#tailAfter(tenant, threadId, cachedSeq));
      const last = tail[tail.length - 1];
      if (!last) return;
      if ((await cache.apply(tenant, tail)) >= last.lastSeq) {
        this.#metrics.cacheRepaired();
        return;
      }
    }
    await this.#repairUncached(tenant, threadId);
  }

  /** `repairFrom` for a reader that holds the cached thread, returning the thread at the head. */
  async repairRead(tenant: string, threadId: string, cached: ThreadState | null): Promise<ThreadState | null> {
    if (cached && cached.seq > 0) {
      const tail = await this.#tailAfter(tenant, threadId, cached.seq);
      if (tail.length > 0) {
        await this.#cache.apply(tenant, tail);
        this.#metrics.cacheRepaired();
      }
      return materialize(cached, patchesOf(tail));
    }
    return this.#repairUncached(tenant, threadId);
  }

  /**
   * The commits after a cached seq. A cache that missed a delete long ago finds nothing
   * after its seq (that life's keys were freed after the retention): the life marker
   * then says where the thread went on, and the tail starts at its tombstone.
   */
  async #tailAfter(tenant: string, threadId: string, cachedSeq: number): Promise<Commit[]> {
    const tail = await this.#rollout.tailAfter(tenant, threadId, cachedSeq);
    if (tail.length > 0) return tail;
    const boundary = await this.#rollout.lifeBoundary(tenant, threadId);
    return boundary > cachedSeq ? this.#rollout.tailAfter(tenant, threadId, boundary) : tail;
  }

  /**
   * Whether the rollout has moved past a cached seq: one existence check, and the life
   * marker alongside (a cache that missed a delete whose keys are freed by now).
   */
  async behind(tenant: string, threadId: string, seq: number): Promise<boolean> {
    const [next, boundary] = await Promise.all([
      this.#rollout.hasCommitAfter(tenant, threadId, seq),
      this.#rollout.lifeBoundary(tenant, threadId),
    ]);
    return next || boundary > seq;
  }

  /** A thread the cache does not have: the compacted base, then the commits after it. */
  async #repairUncached(tenant: string, threadId: string): Promise<ThreadState | null> {
    const cache = this.#cache;
    const { base, tail } = await this.#rollout.loadParts(tenant, threadId);
    if (base) await cache.install(tenant, base);
    if (tail.length > 0) await cache.apply(tenant, tail);
    if (base || tail.length > 0) this.#metrics.cacheRepaired();
    return materialize(base, patchesOf(tail));
  }

  /**
   * Brings the thread's cache to its rollout head and reports the cached seq before and
   * after (`rebuild`). A thread already at head costs one cache seq read and one rollout
   * existence check.
   */
  async repairThread(tenant: string, threadId: string): Promise<RepairResult> {
    const cache = this.#cache;
    const cachedSeq = await cache.seq(tenant, threadId);
    let seq = cachedSeq;
    // Bounded: a concurrent installer or writer may move the row between our calls.
    for (let attempt = 0; attempt < REPAIR_ATTEMPTS; attempt++) {
      if (!(await this.behind(tenant, threadId, seq))) return { cachedSeq, seq };
      await this.repairFrom(tenant, threadId, seq);
      seq = await cache.seq(tenant, threadId);
    }
    if (!(await this.behind(tenant, threadId, seq))) return { cachedSeq, seq };
    throw new Error(
      `the cache of thread ${threadId} stays behind the rollout (at seq ${seq}) after ${REPAIR_ATTEMPTS} repairs`,
    );
  }

  /** Remembers a thread whose cache missed commits, for the background repair. */
  markBehind(tenant: string, threadId: string): void {
    if (this.#repairBehindEveryMs <= 0) return;
    if (this.#behind.size < MAX_BEHIND) this.#behind.set(threadKey(tenant, threadId), { tenant, threadId });
    this.#scheduleRepair();
  }

  #scheduleRepair(): void {
    if (this.#repairTimer !== undefined) return;
    // Not under the request that fell behind: the repair may run for as long as libSQL is down.
    this.#repairTimer = detached(() => setTimeout(() => void this.#repairBehind(), this.#repairBehindEveryMs));
    this.#unref(this.#repairTimer);
  }

  /**
   * Repairs the threads the cache fell behind on, once libSQL answers again, so
   * `consistency=cache` reads catch up by themselves, without waiting for a write or a
   * strong read of each thread. Stops at the first failure (libSQL still down) and tries
   * again later.
   */
  async #repairBehind(): Promise<void> {
    for (const [key, { tenant, threadId }] of this.#behind) {
      const repaired = await this.#guard.try("repair", () => this.repairThread(tenant, threadId));
      if (!repaired.ok) break;
      this.#behind.delete(key);
    }
    this.#repairTimer = undefined;
    if (this.#behind.size > 0) this.#scheduleRepair();
  }
}
