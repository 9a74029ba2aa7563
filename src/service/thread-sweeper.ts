import { threadKey } from "../model/ids.ts";
import type { LifeMarker } from "../rollout/format.ts";
import type { Rollout } from "../rollout/rollout.ts";
import { warnUnlessReported } from "../logging/faults.ts";
import { logger } from "../logging/logger.ts";

const log = logger("service");

/** Writes or deletes at once at most this many objects (a big thread's sweep stays a few waves of requests). */
const SWEEP_CONCURRENCY = 16;
/** Sweeps this process remembers having finished (so a touch of a swept thread costs nothing). */
const MAX_REMEMBERED = 10_000;

/** How long the keys of a deleted life stay occupied by stubs, by default: 7 days. */
export const DEFAULT_DELETE_RETENTION_MS = 7 * 24 * 3600 * 1000;

export interface SweeperOptions {
  rollout: Rollout;
  /**
   * How long after a delete its earlier lives' commit keys stay occupied by stubs. Writers
   * never decide on a head older than a quarter of it (see GroupWriter), so a key is freed
   * only long after every writer that could aim at it has moved on.
   */
  retentionMs: number;
  now: () => Date;
}

/** What this process last finished for a thread: the life, how far, and when the keys may go. */
interface Swept {
  lifeStart: number;
  swept: "content" | "keys";
  freeAt: number;
}

/**
 * Finishes a thread's delete, in two steps, never freeing a commit key a writer could
 * still aim at (put-if-absent orders writers only while a used key stays used):
 * 1. at once: marks where the current life starts (`life.json`: readers start there),
 *    removes the earlier lives' compaction objects and overwrites each of their commits
 *    with a stub that holds no user data: the content is gone, the keys stay occupied;
 * 2. after the retention period: removes the stubs but the first (seq 1's key, which
 *    points at the current life, so a writer that knows nothing of the thread finds it).
 * Like Delta Lake, which removes log files only after a retention period far beyond any
 * writer's decision window. Idempotent and safe to run again at any point (a process
 * killed mid-sweep leaves a state any later sweep finishes): run after each delete, and
 * again by whoever next finds the thread with a life behind it (a read, a write,
 * `npm run rebuild`).
 */
export class ThreadSweeper {
  readonly #o: SweeperOptions;
  readonly #done = new Map<string, Swept>();
  readonly #running = new Map<string, Promise<number>>();

  constructor(options: SweeperOptions) {
    this.#o = options;
  }

  /**
   * Marks the life as starting at `lifeStart` (the tombstone's seq, deleted at `deletedAt`),
   * unless a later one is marked already; resolves with the marker in force.
   */
  async mark(tenant: string, threadId: string, lifeStart: number, deletedAt?: string): Promise<LifeMarker> {
    const life = await this.#o.rollout.readLife(tenant, threadId);
    if (life && life.lifeStart > lifeStart) return life;
    if (life && life.lifeStart === lifeStart && life.deletedAt) return life;
    // A marker without a time (written before it was recorded, or by a reader that only
    // knows the seq): now, which only moves the keys' removal later.
    const at = deletedAt ?? life?.deletedAt ?? this.#o.now().toISOString();
    let marked: LifeMarker;
    if (life && life.lifeStart === lifeStart) {
      marked = { ...life, deletedAt: at };
    } else {
      // A new life: what the previous marker says is swept stays swept (its sweep need not be redone).
      const sweptBelow = life?.swept ? life.lifeStart : life?.sweptBelow;
      marked = { lifeStart, deletedAt: at, ...(sweptBelow ? { sweptBelow } : {}) };
    }
    await this.#o.rollout.writeLife(tenant, threadId, marked);
    return marked;
  }

  /** `sweep` in the background when this process has not done what is due; failures are logged (the next touch tries again). */
  ensure(tenant: string, threadId: string, lifeStart: number, background: (work: Promise<void>) => void): void {
    const done = this.#done.get(threadKey(tenant, threadId));
    if (done && done.lifeStart >= lifeStart && (done.swept === "keys" || this.#o.now().getTime() < done.freeAt)) return;
    background(
      this.sweep(tenant, threadId, lifeStart).then(
        () => {},
        (error: unknown) => warnUnlessReported(log, "sweep of a deleted thread failed", { threadId }, error),
      ),
    );
  }

  /** Marks the life at `lifeStart` and does what is due below it; resolves with the number of objects changed. */
  sweep(tenant: string, threadId: string, lifeStart: number): Promise<number> {
    const key = threadKey(tenant, threadId);
    const running = this.#running.get(key);
    if (running) return running;
    const run = this.#sweep(tenant, threadId, lifeStart).finally(() => this.#running.delete(key));
    this.#running.set(key, run);
    return run;
  }

  async #sweep(tenant: string, threadId: string, lifeStart: number): Promise<number> {
    const rollout = this.#o.rollout;
    let life = await this.mark(tenant, threadId, lifeStart);
    let changed = 0;
    if (life.swept === undefined) {
      changed += await rollout.stubPast(tenant, threadId, life.lifeStart, {
        sweptBelow: life.sweptBelow ?? 1,
        concurrency: SWEEP_CONCURRENCY,
      });
      life = { ...life, swept: "content" };
      await this.#record(tenant, threadId, life);
    }
    const freeAt = Date.parse(life.deletedAt ?? "") + this.#o.retentionMs;
    if (life.swept === "content" && this.#o.now().getTime() >= freeAt) {
      changed += await rollout.freePast(tenant, threadId, life.lifeStart, SWEEP_CONCURRENCY);
      life = { ...life, swept: "keys" };
      await this.#record(tenant, threadId, life);
    }
    const key = threadKey(tenant, threadId);
    this.#done.delete(key);
    this.#done.set(key, { lifeStart: life.lifeStart, swept: life.swept ?? "content", freeAt });
    if (this.#done.size > MAX_REMEMBERED) this.#done.delete(this.#done.keys().next().value as string);
    return changed;
  }

  /**
   * Records how far the sweep went, unless a later delete was marked meanwhile (read
   * again just before: a marker never moves back to an earlier life but within that
   * one round trip; the later life's own sweep then does its part).
   */
  async #record(tenant: string, threadId: string, life: LifeMarker): Promise<void> {
    const current = await this.#o.rollout.readLife(tenant, threadId);
    if (current && current.lifeStart !== life.lifeStart) return;
    await this.#o.rollout.writeLife(tenant, threadId, life);
  }
}
