import type { ArtifactCache, ChangedThread, ThreadCursor } from "../cache/port.ts";
import { type Artifact, parseThreadJson, type ThreadJson, type ThreadState, toThreadJson } from "../model/artifact.ts";
import type { IdempotencyMark } from "../model/idempotency.ts";
import type { VersionPrecondition, WriteCommand } from "../model/decide.ts";
import { withDeadline } from "../model/deadline.ts";
import { uuidv7 } from "../model/ids.ts";
import { materialize } from "../model/materialize.ts";
import { type Metrics, noMetrics } from "../model/metrics.ts";
import type { LogEvent } from "../model/patch.ts";
import { type CompactionOptions, Compactor } from "../rollout/compaction.ts";
import type { Rollout } from "../rollout/rollout.ts";
import type { FaultBurst } from "../logging/faults.ts";
import { CacheGuard } from "./cache-guard.ts";
import { CacheRepairer, type RepairResult } from "./cache-repairer.ts";
import {
  type ArtifactWriteResult,
  type CommitListener,
  GroupWriter,
  type ServiceLimits,
  type WriteResult,
} from "./group-writer.ts";
import { type ArtifactVersion, HistoryReader, type VersionPage } from "./history-reader.ts";
import { DEFAULT_DELETE_RETENTION_MS, ThreadSweeper } from "./thread-sweeper.ts";
import {
  type Consistency,
  type HeadSource,
  type ReadResult,
  type ReadSource,
  type ThreadPage,
  ThreadReader,
} from "./thread-reader.ts";

/** The write path as the HTTP layer sees it. */
export interface WritePath {
  write(tenant: string, threadId: string, command: WriteCommand): Promise<WriteResult>;
}

export type {
  ArtifactVersion,
  ArtifactWriteResult,
  CommitListener,
  Consistency,
  HeadSource,
  ReadResult,
  ReadSource,
  RepairResult,
  ServiceLimits,
  ThreadPage,
  VersionPage,
  WriteResult,
};

export interface ServiceOptions {
  rollout: Rollout;
  cache: ArtifactCache;
  limits: ServiceLimits;
  /** When compaction runs (see rollout/compaction.ts). */
  compaction?: CompactionOptions;
  /** See GroupWriterOptions.onCommit. */
  onCommit?: CommitListener;
  /** Who sequences this service's writes (default: `{ kind: "local" }`). */
  writeMode?: WriteMode;
  /** Keeps work that outlives the answer alive (Workers: `ctx.waitUntil`); default: let it run. */
  background?: (work: Promise<void>) => void;
  now?: () => Date;
  newId?: () => string;
  /** Rounds in a row that lose the put-if-absent race before a write gives up with 503. */
  maxAttempts?: number;
  /** How long a deleted life's commit keys stay occupied by stubs (default 7 days; see ThreadSweeper). */
  deleteRetentionMs?: number;
  /** Waits between rounds; injectable so tests need no real sleeps. */
  backoff?: (attempt: number) => Promise<void>;
  /** See RepairerOptions.repairBehindEveryMs (default 0: off). */
  repairBehindEveryMs?: number;
  /** See RepairerOptions.unref. */
  unref?: (timer: ReturnType<typeof setTimeout>) => void;
  /** Where commits, lost races and cache repairs are reported (default: nowhere). */
  metrics?: Metrics;
  /** libSQL's fault log (default: this service's own; Workers share one per isolate). See cacheFaults. */
  cacheFaults?: FaultBurst;
}

/**
 * Who sequences the writes of a service:
 * - `local`: its own group writer, deciding on the cache (Node, Deno, a Worker without
 *   the sequencer binding); processes coordinate through put-if-absent alone;
 * - `resident`: its own group writer holding each thread's state in memory, for the one
 *   writer of a thread (the Workers sequencer); `onDurable` gets each commit as soon as
 *   it is durable (the sequencer pushes its events);
 * - `forwarded`: writes go to `writes` (the thread's sequencer) and strong reads take the
 *   head from `heads`; the service builds no writer of its own.
 */
export type WriteMode =
  | { kind: "local" }
  | { kind: "resident"; onDurable: CommitListener }
  | { kind: "forwarded"; writes: WritePath; heads: HeadSource };

/** Compaction's default: a delta every 64 seqs (the tail a cold read lists stays under ~64 commits). */
export const DEFAULT_COMPACTION: CompactionOptions = { everyPatches: 64 };

/**
 * The service: the only place that knows the rollout (truth), the cache (fast, possibly
 * behind or down) and the commit listener together. A facade over its parts: the group
 * writer (write path), the reader (read path) and the cache repairer they share.
 */
export class ArtifactService {
  /** Its own writer (local and resident modes); null when writes are forwarded. */
  readonly #writer: GroupWriter | null;
  readonly #writes: WritePath;
  readonly #reader: ThreadReader;
  readonly #history: HistoryReader;
  readonly #sweeper: ThreadSweeper;
  readonly #repairer: CacheRepairer;
  readonly #cache: ArtifactCache;
  readonly #rollout: Rollout;
  /** Work still running after its answer (compaction), so a shutdown or a test can wait for it. */
  readonly #inFlight = new Set<Promise<void>>();

  constructor(options: ServiceOptions) {
    const rollout = options.rollout;
    const metrics = options.metrics ?? noMetrics;
    const guard = new CacheGuard(options.cache, options.cacheFaults);
    const repairer = new CacheRepairer({
      rollout,
      cache: options.cache,
      guard,
      metrics,
      repairBehindEveryMs: options.repairBehindEveryMs ?? 0,
      ...(options.unref ? { unref: options.unref } : {}),
    });
    this.#rollout = rollout;
    this.#cache = options.cache;
    this.#repairer = repairer;
    this.#history = new HistoryReader(rollout);
    const now = options.now ?? (() => new Date());
    const mode = options.writeMode ?? { kind: "local" };
    const retentionMs = options.deleteRetentionMs ?? DEFAULT_DELETE_RETENTION_MS;
    const sweeper = new ThreadSweeper({ rollout, retentionMs, now });
    this.#sweeper = sweeper;
    const background = (work: Promise<void>) => {
      const tracked = work.finally(() => this.#inFlight.delete(tracked));
      this.#inFlight.add(tracked);
      options.background?.(tracked);
    };
    this.#reader = new ThreadReader({
      rollout,
      guard,
      repairer,
      ...(mode.kind === "forwarded" ? { heads: mode.heads } : {}),
      touchedLife: (tenant, threadId, lifeStart) => sweeper.ensure(tenant, threadId, lifeStart, background),
      freshMs: retentionMs / 4,
      now,
    });
    this.#writer = mode.kind === "forwarded" ? null : new GroupWriter({
      rollout,
      guard,
      repairer,
      compactor: new Compactor(rollout, options.compaction ?? DEFAULT_COMPACTION),
      sweeper,
      limits: options.limits,
      onCommit: options.onCommit ?? (() => {}),
      onDurable: mode.kind === "resident" ? mode.onDurable : () => {},
      resident: mode.kind === "resident",
      background,
      now,
      newId: options.newId ?? (() => uuidv7()),
      maxAttempts: options.maxAttempts ?? 20,
      freshMs: retentionMs / 4,
      backoff: options.backoff ?? jitteredBackoff,
      metrics,
    });
    this.#writes = mode.kind === "forwarded" ? mode.writes : this.#writer as GroupWriter;
  }

  write(tenant: string, threadId: string, command: WriteCommand): Promise<WriteResult> {
    return this.#writes.write(tenant, threadId, command);
  }

  /** A write of an artifact: create, update, merge or remove (never a thread's delete). */
  async writeArtifact(
    tenant: string,
    threadId: string,
    command: Extract<WriteCommand, { kind: "create" | "update" | "merge" | "remove" }>,
  ): Promise<ArtifactWriteResult> {
    const result = await this.write(tenant, threadId, command);
    if (result.op === "delete") throw new Error("an artifact write answered as a delete");
    return result;
  }

  /**
   * Ends the thread's life: a delete at the next seq, decided in the thread's write group
   * like any write (`precondition`: If-Match on its rolloutSeq). Answers the tombstone's seq.
   */
  async deleteThread(
    tenant: string,
    threadId: string,
    precondition: VersionPrecondition,
    idempotency?: IdempotencyMark,
  ): Promise<{ threadId: string; seq: number }> {
    const result = await this.write(tenant, threadId, {
      kind: "deleteThread",
      precondition,
      ...(idempotency ? { idempotency } : {}),
    });
    return { threadId, seq: result.thread.rolloutSeq };
  }

  /** Resident mode: the thread as this service's writer holds it, as read-thread's JSON. */
  async writerThread(tenant: string, threadId: string): Promise<ThreadJson | null> {
    const state = await this.#ownWriter().residentThread(tenant, threadId);
    return state && toThreadJson(state);
  }

  /** The head as this service's own writer knows it (resident mode: from memory, confirmed at most a second ago). */
  writerHead(tenant: string, threadId: string): Promise<number> {
    return this.#ownWriter().head(tenant, threadId);
  }

  #ownWriter(): GroupWriter {
    if (!this.#writer) throw new Error("this service forwards its writes");
    return this.#writer;
  }

  readThread(
    tenant: string,
    threadId: string,
    options: { consistency: Consistency; minSeq?: number },
  ): Promise<ReadResult> {
    return this.#reader.readThread(tenant, threadId, options);
  }

  /** The thread right after `seq` (from the rollout; never changes). */
  readThreadAt(tenant: string, threadId: string, seq: number): Promise<ThreadJson> {
    return this.#history.threadAt(tenant, threadId, seq).then(toThreadJson);
  }

  /**
   * Forks `sourceId` at `atSeq` (default: its head, read strongly) into `targetId`: one
   * write of the target thread (its first commit, so `409 thread_exists` if it has one),
   * decided in its group like any other. Answers the new thread as a strong read sees it.
   */
  async fork(
    tenant: string,
    sourceId: string,
    targetId: string,
    atSeq?: number,
    idempotency?: IdempotencyMark,
  ): Promise<ThreadJson> {
    const source = atSeq === undefined
      ? parseThreadJson(await this.#reader.headThread(tenant, sourceId))
      : await this.#history.threadAt(tenant, sourceId, atSeq);
    const result = await this.write(tenant, targetId, {
      kind: "fork",
      from: { threadId: sourceId, seq: source.seq },
      artifacts: source.artifacts,
      ...(idempotency ? { idempotency } : {}),
    });
    // As of the fork's own commit (never later writes): a repeat of a keyed fork answers the same.
    return this.#forkedThread(
      tenant,
      targetId,
      { threadId: sourceId, seq: source.seq },
      source.artifacts.length,
      result,
    );
  }

  /**
   * The fork's answer: the new thread right after the fork's last patch, from the fork's
   * commit alone (one get: it starts the thread's life, at 1 or right after a tombstone)
   * when that commit is this fork's; else (a repeat of a keyed fork, answered by the
   * first one's commit) read as of that seq like any as-of read.
   */
  async #forkedThread(
    tenant: string,
    targetId: string,
    from: { threadId: string; seq: number },
    count: number,
    result: WriteResult,
  ): Promise<ThreadJson> {
    const lastSeq = result.thread.rolloutSeq;
    const firstSeq = lastSeq - count + 1;
    const commit = firstSeq >= 1 ? await this.#rollout.commitAt(tenant, targetId, firstSeq).catch(() => null) : null;
    const first = commit?.patches[0];
    const fork = first && first.op !== "delete" ? first.fork : undefined;
    if (
      commit && commit.firstSeq === firstSeq && commit.lastSeq >= lastSeq && fork?.threadId === from.threadId &&
      fork.seq === from.seq
    ) {
      // A fork after a delete continues from the tombstone, which ended every earlier life.
      const base: ThreadState | null = firstSeq === 1 ? null : {
        threadId: targetId,
        createdAt: commit.at,
        updatedAt: commit.at,
        seq: firstSeq - 1,
        artifacts: [],
        deleted: true,
        lifeStart: firstSeq - 1,
      };
      const state = materialize(base, commit.patches.filter((patch) => patch.seq <= lastSeq));
      if (state) return toThreadJson(state);
    }
    return this.readThreadAt(tenant, targetId, lastSeq);
  }

  /** Every version of one artifact, oldest first, a page at a time. */
  artifactVersions(
    tenant: string,
    threadId: string,
    artifactId: string,
    page: { afterSeq: number; limit: number },
  ): Promise<VersionPage> {
    return this.#history.versions(tenant, threadId, artifactId, page);
  }

  getArtifact(
    tenant: string,
    threadId: string,
    artifactId: string,
  ): Promise<{ artifact: Artifact; source: ReadSource }> {
    return this.#reader.getArtifact(tenant, threadId, artifactId);
  }

  listThreads(tenant: string, page: { after: ThreadCursor | null; limit: number }): Promise<ThreadPage> {
    return this.#reader.listThreads(tenant, page);
  }

  /** Threads changed since `page.since`, newest first, deleted ones included: ids and heads only (webhook sweeps). */
  changedThreads(
    tenant: string,
    page: { since: string; after: ThreadCursor | null; limit: number },
  ): Promise<ChangedThread[]> {
    return this.#reader.changedThreads(tenant, page);
  }

  /** The event log after `afterSeq` (the live path's EventReader). */
  readEvents(tenant: string, threadId: string, afterSeq: number, limit: number): Promise<LogEvent[]> {
    return this.#reader.readEvents(tenant, threadId, afterSeq, limit);
  }

  /** Several threads' event logs, the cache's part in one query (see ThreadReader.readEventsMany). */
  readEventsMany(
    tenant: string,
    reads: readonly { threadId: string; afterSeq: number; head?: number }[],
    limit: number,
  ): Promise<LogEvent[][]> {
    return this.#reader.readEventsMany(tenant, reads, limit);
  }

  head(tenant: string, threadId: string): Promise<number> {
    return this.#reader.head(tenant, threadId);
  }

  /**
   * Finishes the delete of a thread whose rollout has a tombstone (`rebuild`): marks its
   * current life and removes its earlier lives' objects. Resolves with how many it removed.
   */
  sweepThread(tenant: string, threadId: string, lifeStart: number): Promise<number> {
    return this.#sweeper.sweep(tenant, threadId, lifeStart);
  }

  /** Brings one thread's cache to its rollout head (`rebuild`); cache failures are thrown. */
  repairThread(tenant: string, threadId: string): Promise<RepairResult> {
    return this.#repairer.repairThread(tenant, threadId);
  }

  /** Resolves once the work started after answers (compaction) has finished. */
  async idle(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all([...this.#inFlight]);
  }

  /** Whether each store answers; with `timeoutMs`, one that has not answered by then counts as down. */
  async health(options: { timeoutMs?: number } = {}): Promise<{ cache: "up" | "down"; rollout: "up" | "down" }> {
    const bounded = (check: Promise<boolean>, what: string) =>
      options.timeoutMs === undefined ? check : withDeadline(check, options.timeoutMs, what).catch(() => false);
    const [cache, rollout] = await Promise.all([
      bounded(this.#cache.ping().then(() => true, () => false), "cache ping"),
      bounded(this.#rollout.reachable(), "rollout store check"),
    ]);
    return { cache: cache ? "up" : "down", rollout: rollout ? "up" : "down" };
  }
}

function jitteredBackoff(attempt: number): Promise<void> {
  const ceiling = Math.min(250, 4 * 2 ** attempt);
  return new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
}
