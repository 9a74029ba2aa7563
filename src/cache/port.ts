import type { Artifact, ThreadJson, ThreadState } from "../model/artifact.ts";
import type { GroupContext, TargetLookup } from "../model/decide.ts";
import type { Commit, LogEvent } from "../model/patch.ts";

export type { TargetLookup };

/** A write context from the cache, and how old it may be. */
export interface CachedContext extends GroupContext {
  /**
   * The `at` of the cached head's last patch (null: the cache has no row for the thread):
   * the head was the rollout's at least then, which bounds how stale the context can be.
   */
  updatedAt: string | null;
}

export interface EventPage {
  /** The thread's cached seq (0 if the cache has no row for it). */
  seq: number;
  /** Events with seq <= floor are not in the log: read them from the rollout. */
  floor: number;
  /** The seq of the thread's latest delete (0: never deleted): nothing before it is in the log, nor anywhere. */
  lifeStart: number;
  events: LogEvent[];
}

/**
 * The cache cannot be used right now (unreachable, timing out, or refusing calls for a
 * moment after such a failure). Every cache method may throw it; callers fall back to
 * the rollout. `reported` is true when it was already reported (the breaker refusing
 * calls after the failure that opened it), so callers need not log it again.
 */
export class CacheUnavailableError extends Error {
  readonly reported: boolean;

  constructor(cause: unknown, reported = false) {
    super("libSQL cache unavailable", { cause });
    this.name = "CacheUnavailableError";
    this.reported = reported;
  }
}

/**
 * The materialized cache. Every method may throw (the cache is allowed to be down);
 * callers fall back to the rollout. All reads of one call are one consistent snapshot.
 */
export interface ArtifactCache {
  /**
   * Applies consecutive commits in order, each whole or not at all and only on top of
   * its predecessor (so the cache always stands at a commit boundary); returns the
   * cached seq afterwards.
   */
  apply(tenant: string, commits: readonly Commit[]): Promise<number>;
  /** Puts a whole thread state (from a snapshot) into a cache that has no row for the thread. */
  install(tenant: string, state: ThreadState): Promise<number>;
  /** The cached seq of a thread, 0 if unknown. */
  seq(tenant: string, threadId: string): Promise<number>;
  /** The thread with its recent Idempotency-Keys (`recentKeys`). */
  readThread(tenant: string, threadId: string): Promise<ThreadState | null>;
  /** `readThread` with the artifacts as the JSON text the cache holds: what reads serve. */
  readThreadJson(tenant: string, threadId: string): Promise<ThreadJson | null>;
  /**
   * The context a group of writes is decided on: the seq, the artifact count, each
   * lookup's target and each Idempotency-Key's record (null: none; absent: no key), read together.
   */
  writeContext(
    tenant: string,
    threadId: string,
    lookups: readonly TargetLookup[],
    keys?: readonly (string | null)[],
  ): Promise<CachedContext>;
  getArtifact(
    tenant: string,
    threadId: string,
    artifactId: string,
  ): Promise<{ seq: number; artifact: Artifact | null }>;
  listThreads(tenant: string, page: { after: ThreadCursor | null; limit: number }): Promise<ThreadState[]>;
  /**
   * The tenant's threads whose last patch is at or after `since` (an ISO time), newest
   * first, deleted ones (at their tombstone) included: ids, heads and times only.
   */
  changedThreads(
    tenant: string,
    page: { since: string; after: ThreadCursor | null; limit: number },
  ): Promise<ChangedThread[]>;
  events(tenant: string, threadId: string, afterSeq: number, limit: number): Promise<EventPage>;
  /**
   * `events` of several threads of one tenant in one query (a many-threads stream's
   * catch-up, or its safety poll, in one round trip): one page per read, in order, each
   * of at most `limit` events.
   */
  eventsMany(tenant: string, reads: readonly EventRead[], limit: number): Promise<EventPage[]>;
  /** Throws unless the cache answers (and its schema is in place). */
  ping(): Promise<void>;
  close(): void;
}

/** One thread's read of `eventsMany`: its events after `afterSeq`. */
export interface EventRead {
  threadId: string;
  afterSeq: number;
}

/** A thread's head and when it was reached (see ArtifactCache.changedThreads). */
export interface ChangedThread {
  threadId: string;
  seq: number;
  updatedAt: string;
}

/** A keyset position in the thread list (updatedAt desc, threadId desc). */
export interface ThreadCursor {
  updatedAt: string;
  threadId: string;
}
