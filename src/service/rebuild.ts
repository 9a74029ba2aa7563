import type { ArtifactCache } from "../cache/port.ts";
import { describeError } from "../model/errors.ts";
import type { Rollout } from "../rollout/rollout.ts";
import type { ArtifactService } from "./artifact-service.ts";

/**
 * `rebuild`: brings the cache of every thread (of every tenant, of one tenant, or one
 * thread) to its rollout head, with the service's own repair. Web-standard: it speaks
 * only the service, the Rollout over a BlobStore (to enumerate threads) and the
 * ArtifactCache port (to tell a cache that went away from a thread that failed).
 *
 * Idempotent and resumable: the cache is only ever a contiguous prefix of the rollout,
 * so a thread already at head costs one cache seq read and one rollout existence check
 * and changes nothing, and a run stopped midway is completed by the next one.
 */

export interface RebuildScope {
  /** Only this tenant (default: every tenant in the rollout). */
  tenant?: string;
  /** Only this thread of `tenant`. */
  threadId?: string;
}

export interface ThreadTarget {
  tenant: string;
  threadId: string;
}

export type RebuildEvent =
  | { kind: "start"; total: number }
  | {
    kind: "thread";
    tenant: string;
    threadId: string;
    /** The cached seq before (0: the cache had no row) and after (the rollout head). */
    cachedSeq: number;
    seq: number;
    /** Patches the cache moved forward by: seq - cachedSeq. */
    applied: number;
    done: number;
    total: number;
    appliedTotal: number;
  }
  | {
    kind: "failed";
    tenant: string;
    threadId: string;
    error: string;
    done: number;
    total: number;
    appliedTotal: number;
  };

export interface RebuildSummary {
  /** Threads found in scope. */
  threads: number;
  /** Threads whose cache moved forward. */
  repaired: number;
  /** Threads whose cache was already at the rollout head (nothing written). */
  atHead: number;
  /** Patches the cache moved forward by, over every thread. */
  applied: number;
  /** Objects of deleted lives removed (deletes a killed process left unfinished). */
  swept: number;
  failed: { tenant: string; threadId: string; error: string }[];
}

export interface RebuildOptions {
  scope?: RebuildScope;
  /** Threads repaired at once (default 4). */
  concurrency?: number;
  onEvent?: (event: RebuildEvent) => void;
}

/** The run cannot go on: the cache or the rollout does not answer. Nothing already done is lost. */
export class RebuildAbortedError extends Error {
  readonly store: "cache" | "rollout";
  constructor(store: "cache" | "rollout", cause: unknown) {
    super(`the ${store === "cache" ? "libSQL cache" : "rollout store"} is unreachable: ${describeError(cause)}`, {
      cause,
    });
    this.name = "RebuildAbortedError";
    this.store = store;
  }
}

/** What rebuild works with: the service (its repair), the rollout (to list threads), the cache (to ping it). */
export interface RebuildDeps {
  service: ArtifactService;
  rollout: Rollout;
  cache: ArtifactCache;
}

export async function rebuildCache(deps: RebuildDeps, options: RebuildOptions = {}): Promise<RebuildSummary> {
  const { service, cache } = deps;
  const { scope = {}, onEvent = () => {} } = options;
  const concurrency = Math.max(1, options.concurrency ?? 4);
  if (scope.threadId !== undefined && scope.tenant === undefined) {
    throw new TypeError("a thread scope needs its tenant");
  }

  try {
    await cache.ping();
  } catch (error) {
    throw new RebuildAbortedError("cache", error);
  }

  let targets: ThreadTarget[];
  try {
    targets = await threadsInScope(deps.rollout, scope);
  } catch (error) {
    throw new RebuildAbortedError("rollout", error);
  }

  const summary: RebuildSummary = {
    threads: targets.length,
    repaired: 0,
    atHead: 0,
    applied: 0,
    swept: 0,
    failed: [],
  };
  onEvent({ kind: "start", total: targets.length });
  let next = 0;
  let done = 0;
  let aborted: RebuildAbortedError | null = null;

  const worker = async () => {
    while (aborted === null && next < targets.length) {
      const { tenant, threadId } = targets[next++] as ThreadTarget;
      try {
        const { cachedSeq, seq } = await service.repairThread(tenant, threadId);
        if (seq === 0 && scope.threadId !== undefined) throw new Error("the rollout has no patch of this thread");
        // A thread with a tombstone: finish its delete (a process killed mid-sweep leaves old lives behind).
        const lifeStart = (await cache.readThread(tenant, threadId))?.lifeStart;
        if (lifeStart !== undefined) summary.swept += await service.sweepThread(tenant, threadId, lifeStart);
        const applied = seq - cachedSeq;
        summary.applied += applied;
        if (applied > 0) summary.repaired++;
        else summary.atHead++;
        done++;
        onEvent({
          kind: "thread",
          tenant,
          threadId,
          cachedSeq,
          seq,
          applied,
          done,
          total: targets.length,
          appliedTotal: summary.applied,
        });
      } catch (error) {
        // A cache that went away stops the run (every other thread would fail the same
        // way); anything else is this thread's problem: report it and go on.
        const down = await cache.ping().then(
          () => null,
          (pingError: unknown) => pingError,
        );
        if (down !== null) {
          aborted ??= new RebuildAbortedError("cache", down);
          return;
        }
        done++;
        summary.failed.push({ tenant, threadId, error: describeError(error) });
        onEvent({
          kind: "failed",
          tenant,
          threadId,
          error: describeError(error),
          done,
          total: targets.length,
          appliedTotal: summary.applied,
        });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, targets.length)) }, worker));
  if (aborted) throw aborted;
  return summary;
}

/** The threads a scope covers, enumerated from the rollout (about one `list` call per thread). */
export async function threadsInScope(rollout: Rollout, scope: RebuildScope): Promise<ThreadTarget[]> {
  if (scope.tenant !== undefined && scope.threadId !== undefined) {
    return [{ tenant: scope.tenant, threadId: scope.threadId }];
  }
  const tenants: string[] = [];
  if (scope.tenant !== undefined) tenants.push(scope.tenant);
  else for await (const tenant of rollout.listTenants()) tenants.push(tenant);
  const targets: ThreadTarget[] = [];
  for (const tenant of tenants) {
    for await (const threadId of rollout.listThreads(tenant)) targets.push({ tenant, threadId });
  }
  return targets;
}
