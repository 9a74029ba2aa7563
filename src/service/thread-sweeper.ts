import { threadKey } from "../model/ids.ts";
import { describeError } from "../model/errors.ts";
import { firstSeqOfCommitKey, rangeOfDeltaKey, seqOfSnapshotKey } from "../rollout/keys.ts";
import type { Rollout } from "../rollout/rollout.ts";
import type { ServiceLogger } from "./cache-guard.ts";

/** Deletes at once at most this many objects (a big thread's sweep stays a few waves of requests). */
const SWEEP_CONCURRENCY = 16;
/** Sweeps this process remembers having finished (so a touch of a swept thread costs nothing). */
const MAX_REMEMBERED = 10_000;

/**
 * Finishes a thread's delete: marks where its current life starts (`life.json`: readers
 * start there, whatever is left below it), then removes every object of its earlier
 * lives: compaction objects first, the commits below the tombstone last. Idempotent and
 * safe to run again at any point (a process killed mid-sweep leaves a state any later
 * sweep finishes); run after each delete, and again by whoever next finds the thread
 * with a life behind it (a read, a write, `npm run rebuild`).
 */
export class ThreadSweeper {
  readonly #rollout: Rollout;
  readonly #logger: ServiceLogger;
  readonly #done = new Map<string, number>();
  readonly #running = new Map<string, Promise<number>>();

  constructor(rollout: Rollout, logger: ServiceLogger) {
    this.#rollout = rollout;
    this.#logger = logger;
  }

  /**
   * Marks the life as starting at `since` (the tombstone's seq), unless a later one is
   * marked already; resolves with the marked life's start.
   */
  async mark(tenant: string, threadId: string, since: number): Promise<number> {
    const life = await this.#rollout.readLife(tenant, threadId);
    if (life && life.since >= since) return life.since;
    await this.#rollout.writeLife(tenant, threadId, { since });
    return since;
  }

  /** `sweep`, once per life per process, in the background; failures are logged (the next touch tries again). */
  ensure(tenant: string, threadId: string, since: number, background: (work: Promise<void>) => void): void {
    const key = threadKey(tenant, threadId);
    if ((this.#done.get(key) ?? 0) >= since) return;
    background(
      this.sweep(tenant, threadId, since).then(
        () => {},
        (error: unknown) =>
          this.#logger.warn("sweep of a deleted thread failed", { threadId, error: describeError(error) }),
      ),
    );
  }

  /** Marks the life at `since` and removes everything before it; resolves with the number of objects removed. */
  sweep(tenant: string, threadId: string, since: number): Promise<number> {
    const key = threadKey(tenant, threadId);
    const running = this.#running.get(key);
    if (running) return running;
    const run = this.#sweep(tenant, threadId, since).finally(() => this.#running.delete(key));
    this.#running.set(key, run);
    return run;
  }

  async #sweep(tenant: string, threadId: string, since: number): Promise<number> {
    const life = await this.mark(tenant, threadId, since);
    const [keys, pointer] = await Promise.all([
      this.#rollout.threadKeys(tenant, threadId),
      this.#rollout.readPointer(tenant, threadId),
    ]);
    const compaction: string[] = [];
    const commits: string[] = [];
    for (const key of keys) {
      const commit = firstSeqOfCommitKey(key);
      if (commit !== null) {
        if (commit < life) commits.push(key);
        continue;
      }
      const delta = rangeOfDeltaKey(key);
      const snapshot = seqOfSnapshotKey(key);
      if ((delta && delta.firstSeq < life) || (snapshot !== null && snapshot < life)) compaction.push(key);
      else if (key.endsWith("/compaction.json") && (pointer?.since ?? 1) < life) compaction.push(key);
    }
    // Derived objects first, then the commits, oldest first: whatever a kill leaves is below the marked life.
    for (const batch of [compaction, commits]) {
      for (let i = 0; i < batch.length; i += SWEEP_CONCURRENCY) {
        await Promise.all(batch.slice(i, i + SWEEP_CONCURRENCY).map((key) => this.#rollout.deleteKey(key)));
      }
    }
    const threadKeyOf = threadKey(tenant, threadId);
    this.#done.set(threadKeyOf, life);
    if (this.#done.size > MAX_REMEMBERED) this.#done.delete(this.#done.keys().next().value as string);
    return compaction.length + commits.length;
  }
}
