import type { ThreadState } from "../model/artifact.ts";
import { threadKey } from "../model/ids.ts";
import { materialize } from "../model/materialize.ts";
import { patchesOf } from "../model/patch.ts";
import type { Rollout } from "../rollout/rollout.ts";
import type { CacheGuard } from "./cache-guard.ts";

/** How long a resident head counts as the rollout's without asking the store again (ms). */
const HEAD_FRESH_MS = 1000;

export interface ResidentThreadsOptions {
  rollout: Rollout;
  guard: CacheGuard;
  /** A state confirmed longer ago than this is loaded again, never followed from (see GroupWriterOptions.freshMs). */
  freshMs: number;
  now: () => Date;
  /** Keeps the chained cache applies alive after the answer (Workers: waitUntil). */
  background: (work: Promise<void>) => void;
}

/**
 * Resident mode (the Workers sequencer, the one writer of its thread): each thread's
 * state in memory as of its last commit or check, and when the store last confirmed it,
 * so a group is decided with no read before the write; and each thread's cache applies
 * chained in commit order, so the cache follows without holding anyone's answer.
 */
export class ResidentThreads {
  readonly #o: ResidentThreadsOptions;
  readonly #states = new Map<string, { state: ThreadState | null; confirmedAt: number }>();
  /** Each thread's last cache apply still running, so the next one goes after it. */
  readonly #applying = new Map<string, Promise<void>>();
  /** Each thread's work deferred to a later task (`later`), in the order it was asked for. */
  readonly #later = new Map<string, (() => void)[]>();

  constructor(options: ResidentThreadsOptions) {
    this.#o = options;
  }

  /** The state and when the store last confirmed it, loaded if this process holds none (or one too old). */
  async held(tenant: string, threadId: string): Promise<{ state: ThreadState | null; confirmedAt: number }> {
    const state = await this.state(tenant, threadId);
    return { state, confirmedAt: this.#states.get(threadKey(tenant, threadId))?.confirmedAt ?? this.#now() };
  }

  /**
   * The resident state, loaded on first use (the cache's copy, checked against the
   * rollout by one existence check; the rollout's when the cache is behind or down), and
   * checked again when `confirm` asks.
   */
  async state(tenant: string, threadId: string, confirm = false): Promise<ThreadState | null> {
    const key = threadKey(tenant, threadId);
    let resident = this.#states.get(key);
    if (resident && this.#now() - resident.confirmedAt > this.#o.freshMs) {
      // Too old to follow from (the keys after it may have been freed since): load it again.
      this.#states.delete(key);
      resident = undefined;
    }
    if (resident && !confirm) return resident.state;
    let state: ThreadState | null;
    if (resident) {
      state = resident.state;
    } else {
      const cached = await this.#o.guard.try("readThread", (cache) => cache.readThread(tenant, threadId));
      state = cached.ok ? cached.value : await this.#o.rollout.load(tenant, threadId);
    }
    const tail = await this.#o.rollout.followCommits(tenant, threadId, state?.seq ?? 0);
    if (tail.length > 0) {
      state = state ? materialize(state, patchesOf(tail)) : await this.#o.rollout.load(tenant, threadId);
    }
    this.set(tenant, threadId, state);
    return state;
  }

  /**
   * The thread's head: from memory while the store confirmed it within the last second
   * (its own commits confirm it), else after one existence check (and a catch-up if
   * another writer moved it). Cheaper than a check per strong read.
   */
  async head(tenant: string, threadId: string): Promise<number> {
    return (await this.confirmed(tenant, threadId))?.seq ?? 0;
  }

  /** The state at that head (what a strong read, or a fork's source, may answer). */
  async confirmed(tenant: string, threadId: string): Promise<ThreadState | null> {
    const resident = this.#states.get(threadKey(tenant, threadId));
    if (resident && this.#now() - resident.confirmedAt < HEAD_FRESH_MS) return resident.state;
    return this.state(tenant, threadId, true);
  }

  /** Never moves a resident state back (a slow check finishing after a newer commit). */
  set(tenant: string, threadId: string, state: ThreadState | null, confirmedAt = this.#now()): void {
    const key = threadKey(tenant, threadId);
    const current = this.#states.get(key);
    if (current && (current.state?.seq ?? 0) > (state?.seq ?? 0)) return;
    this.#states.set(key, { state, confirmedAt });
  }

  /** Forgets the state (a put whose outcome is unknown, a round too old): the next use loads it again. */
  forget(tenant: string, threadId: string): void {
    this.#states.delete(threadKey(tenant, threadId));
  }

  /**
   * Runs `work` in a later task, after the thread's earlier `later` work: what follows a
   * commit but no next commit depends on (its events pushed, its cache apply started)
   * goes after the next group's put has gone out, which it would otherwise hold up (the
   * put leaves once the task that decided it ends), and in commit order all the same.
   */
  later(tenant: string, threadId: string, work: () => void): void {
    const key = threadKey(tenant, threadId);
    const queued = this.#later.get(key);
    if (queued) {
      queued.push(work);
      return;
    }
    this.#later.set(key, [work]);
    setTimeout(() => {
      const due = this.#later.get(key) ?? [];
      this.#later.delete(key);
      for (const run of due) {
        try {
          run();
        } catch {
          // Each is its own: a push that throws stops nothing after it.
        }
      }
    }, 0);
  }

  /** Runs `apply` after the thread's previous one (kept alive as background work). */
  chainApply(tenant: string, threadId: string, apply: () => Promise<void>): void {
    const key = threadKey(tenant, threadId);
    const previous = this.#applying.get(key) ?? Promise.resolve();
    const next = previous.then(apply).catch(() => {});
    this.#applying.set(key, next);
    this.#o.background(next);
    void next.then(() => {
      if (this.#applying.get(key) === next) this.#applying.delete(key);
    });
  }

  #now(): number {
    return this.#o.now().getTime();
  }
}
