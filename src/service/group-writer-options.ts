import type { Metrics } from "../model/metrics.ts";
import type { Commit } from "../model/patch.ts";
import type { Compactor } from "../rollout/compaction.ts";
import type { Rollout } from "../rollout/rollout.ts";
import type { CacheGuard } from "./cache-guard.ts";
import type { CacheRepairer } from "./cache-repairer.ts";
import type { ThreadSweeper } from "./thread-sweeper.ts";

/** What GroupWriter is built from. */
export interface ServiceLimits {
  maxPayloadBytes: number;
  maxArtifactsPerThread: number;
}

/** Called with every commit this writer made; must not throw. */
export type CommitListener = (tenant: string, commit: Commit) => void;

export interface GroupWriterOptions {
  rollout: Rollout;
  guard: CacheGuard;
  repairer: CacheRepairer;
  compactor: Compactor;
  /** Finishes deletes: marks a new life and removes the old ones' objects. */
  sweeper: ThreadSweeper;
  limits: ServiceLimits;
  /** After a commit is durable and applied to the cache (live streams that read the cache log are hinted here). */
  onCommit: CommitListener;
  /** As soon as a commit is durable, before the cache has it (events pushed to streams that need no log read). */
  onDurable: CommitListener;
  /**
   * Keep each thread's state in memory and decide on it (ResidentThreads): for the one
   * writer of its thread (the Workers sequencer); put-if-absent still checks every decision.
   */
  resident: boolean;
  /** Runs work that must not hold the answer (compaction); the runtime keeps it alive (Workers: waitUntil). */
  background: (work: Promise<void>) => void;
  now: () => Date;
  newId: () => string;
  /** Rounds in a row that lose the race before a write gives up with 503. */
  maxAttempts: number;
  /**
   * The oldest basis a put may be made on (ms): a quarter of the delete retention, so no
   * writer aims at a freed key (see ThreadSweeper; docs/decisions.md "Deleting a thread").
   */
  freshMs: number;
  /** Waits between rounds; injectable so tests need no real sleeps. */
  backoff: (attempt: number) => Promise<void>;
  /** Commits, patches per commit and lost races are reported here. */
  metrics: Metrics;
}
