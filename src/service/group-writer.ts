import type { ThreadState } from "../model/artifact.ts";
import {
  type Answer,
  answerOf,
  type ArtifactWriteResult,
  countAfter,
  patchesToAppend,
  replayAnswer,
  type ThreadDeleteResult,
  type WriteResult,
} from "../model/answer.ts";
import { decideGroup, type GroupOutcome, targetOf, type WriteCommand } from "../model/decide.ts";
import { ProblemError } from "../model/errors.ts";
import { threadKey } from "../model/ids.ts";
import { materialize } from "../model/materialize.ts";
import { type Commit, commitOf, isTombstone, type Patch } from "../model/patch.ts";
import { activeContext, type Context, detached } from "../model/tracing.ts";
import { warnUnlessReported } from "../logging/faults.ts";
import { logger } from "../logging/logger.ts";
import { inCommitSpan } from "./commit-span.ts";
import type { CommitListener, GroupWriterOptions, ServiceLimits } from "./group-writer-options.ts";
import { GroupQueue } from "./group-queue.ts";
import { ResidentThreads } from "./resident-threads.ts";
import { type Basis, WriteBasis } from "./write-basis.ts";

export type { ArtifactWriteResult, ThreadDeleteResult, WriteResult };
export type { CommitListener, GroupWriterOptions, ServiceLimits };

const log = logger("service");

/** A write waiting for its thread's next group. */
interface PendingWrite {
  tenant: string;
  threadId: string;
  command: WriteCommand;
  /** The trace context the write came in (the commit span of its group hangs under the first write's). */
  context: Context;
  resolve: (result: WriteResult) => void;
  reject: (error: unknown) => void;
}

const CACHE_BASIS: Basis = { from: "cache" };
/**
 * Writes of one thread committed together at most: enough to absorb every connection
 * of a busy client pool, small enough that one commit object and one cache batch stay small.
 */
const MAX_GROUP = 64;

/**
 * The write path's append-and-retry loop. Writes of one thread queue in this process and
 * go in groups: a group is decided on one context, in order (each write on the state the
 * ones before it leave), and committed as ONE object at `commits/{head + 1}`, if absent;
 * then applied to the cache in one batch and answered. A lost race (another process took
 * that seq) costs a catch-up and a new decision; nothing of the group is written twice or half.
 */
export class GroupWriter {
  readonly #o: GroupWriterOptions;
  // A thread's delete goes alone: its commit is the tombstone, and nothing else shares it.
  readonly #groups = new GroupQueue<PendingWrite>(
    MAX_GROUP,
    (_key, group, release) => this.#commitGroup(group, release),
    (write) => write.command.kind === "deleteThread",
  );
  readonly #basis: WriteBasis;
  /** Resident mode only. */
  readonly #resident: ResidentThreads | null;

  constructor(options: GroupWriterOptions) {
    this.#o = options;
    this.#basis = new WriteBasis(options);
    this.#resident = options.resident ? new ResidentThreads(options) : null;
  }

  write(tenant: string, threadId: string, command: WriteCommand): Promise<WriteResult> {
    return new Promise((resolve, reject) =>
      this.#groups.push(threadKey(tenant, threadId), {
        tenant,
        threadId,
        command,
        context: activeContext(),
        resolve,
        reject,
      })
    );
  }

  /**
   * Resident mode: the thread as this writer holds it (at or past the cache, which
   * follows it), confirmed against the rollout within the last second, as `head` is.
   */
  residentThread(tenant: string, threadId: string): Promise<ThreadState | null> {
    return this.#residentOnly().confirmed(tenant, threadId);
  }

  /** Resident mode: the thread's head, from memory while confirmed within the last second. */
  head(tenant: string, threadId: string): Promise<number> {
    return this.#residentOnly().head(tenant, threadId);
  }

  /**
   * Settles every write of the group (traced as one `commit` span): if something throws,
   * every write gets the error. `release` lets the thread's next group start (see #writeGroup).
   */
  async #commitGroup(group: PendingWrite[], release: () => void): Promise<void> {
    const first = group[0];
    if (!first) return;
    try {
      await inCommitSpan(
        group.map((write) => write.context),
        () => this.#writeGroup(first.tenant, first.threadId, group, release),
      );
    } catch (error) {
      for (const write of group) write.reject(error);
    }
  }

  async #writeGroup(tenant: string, threadId: string, group: PendingWrite[], release: () => void): Promise<void> {
    const commands = group.map((write) => write.command);
    const lookups = commands.map(targetOf);
    const keys = commands.map((command) => command.idempotency?.key ?? null);
    const heads = this.#basis.heads;
    let basis = this.#resident ? await this.#residentBasis(tenant, threadId) : CACHE_BASIS;
    for (let attempt = 0;; attempt++) {
      if (attempt > 0) {
        if (attempt >= this.#o.maxAttempts) {
          throw new ProblemError("unavailable", "too much contention on this thread; retry", { retryAfterSeconds: 1 });
        }
        await this.#o.backoff(attempt);
      }
      const roundAt = this.#now();
      const onlyCreates = commands.every((c) => c.kind === "create");
      const round = await this.#basis.contextFor(tenant, threadId, lookups, keys, basis, onlyCreates);
      basis = round.basis;
      const { context } = round;
      const basisAt = basis.from === "state" ? basis.at : roundAt;
      const outcomes = decideGroup(commands, context, {
        threadId,
        at: this.#o.now().toISOString(),
        newId: this.#o.newId,
        maxArtifactsPerThread: this.#o.limits.maxArtifactsPerThread,
        maxPayloadBytes: this.#o.limits.maxPayloadBytes,
      });
      const patches = patchesToAppend(outcomes);

      if (patches.length === 0) {
        // Refusals and idempotent answers append nothing, so no put-if-absent would
        // reveal a stale context: it is checked against the head, whatever it was decided
        // on (the cache may have missed commits made while it was down, or by a process
        // without it; a resident state learns of another writer only this way or by
        // losing a race). Behind: catch up and decide again. One existence check, on
        // answers that write nothing.
        if (await this.#o.rollout.hasCommitAfter(tenant, threadId, context.seq)) {
          heads.shared(tenant, threadId);
          if (!round.fromKnownHead) basis = await this.#basis.catchUp(tenant, threadId, context.seq, basis);
          this.#holdResident(tenant, threadId, basis);
          continue;
        }
        heads.remember(tenant, threadId, { seq: context.seq, artifactCount: context.artifactCount });
        if (basis.from === "state") this.#resident?.set(tenant, threadId, basis.state);
        return this.#settle(tenant, threadId, group, outcomes, []);
      }

      if (this.#now() - basisAt > this.#o.freshMs) {
        // Decided on a head too old to aim with (a process paused mid-round): decide again on a fresh one.
        this.#forget(tenant, threadId);
        basis = this.#resident ? await this.#residentBasis(tenant, threadId) : CACHE_BASIS;
        continue;
      }
      const commit = commitOf(patches);
      // A store failure leaves it unknown whether the commit landed: every write of the
      // group gets the error (a 503), and the next writer finds out by put-if-absent.
      const appended = await this.#o.rollout.append(tenant, commit).catch((error: unknown) => {
        this.#forget(tenant, threadId);
        throw error;
      });
      if (appended === "created") {
        this.#o.metrics.committed(patches.length);
        heads.remember(tenant, threadId, {
          seq: commit.lastSeq,
          artifactCount: countAfter(context.artifactCount, patches),
        });
        if (isTombstone(commit)) await this.#markLife(tenant, threadId, commit);
        if (this.#resident && basis.from === "state") {
          // The thread's one writer answers as soon as the commit is durable: the next
          // group is decided on the state in memory, strong reads take the head from it
          // (and its state while the cache lags), and the cache follows in commit order
          // (a chain per thread) without holding anyone's answer. Only what the next
          // group depends on is done before it starts: the state it is decided on. Its
          // put then leaves first (a put goes out once the task that made it ends);
          // this commit's events, its cache apply (each in commit order), its answers and
          // its compaction follow in the next task. Measured in the edge bench: the next
          // put left ~5 ms after the last one was durable when all of that came first.
          const resident = this.#resident;
          resident.set(tenant, threadId, materialize(basis.state, patches));
          resident.later(tenant, threadId, () => {
            this.#o.onDurable(tenant, commit);
            resident.chainApply(tenant, threadId, () => this.#applyCommitted(tenant, threadId, commit));
          });
          release();
          await nextTask();
          this.#afterDurable(tenant, threadId, commit, context.deleted === true, context.seq, false);
          return this.#settle(tenant, threadId, group, outcomes, patches);
        }
        this.#afterDurable(tenant, threadId, commit, context.deleted === true, context.seq, true);
        // A created commit is the thread's, whatever happens next: no key a writer can aim
        // at is ever freed (see freshMs), so it landed in the life it was decided in.
        await this.#applyCommitted(tenant, threadId, commit);
        return this.#settle(tenant, threadId, group, outcomes, patches);
      }
      // Another writer took the seq after our context: learn what it wrote, then decide
      // again (after a remembered head, on the cache: the next round reads it).
      this.#o.metrics.commitConflict();
      heads.shared(tenant, threadId);
      if (!round.fromKnownHead) basis = await this.#basis.catchUp(tenant, threadId, context.seq, basis);
      this.#holdResident(tenant, threadId, basis);
    }
  }

  /** Resident mode: the state held, as a basis. */
  async #residentBasis(tenant: string, threadId: string): Promise<Basis> {
    const { state, confirmedAt } = await (this.#resident as ResidentThreads).held(tenant, threadId);
    return { from: "state", state, at: confirmedAt };
  }

  /** Resident mode: a caught-up state becomes the one held. */
  #holdResident(tenant: string, threadId: string, basis: Basis): void {
    if (basis.from === "state") this.#resident?.set(tenant, threadId, basis.state, basis.at);
  }

  #forget(tenant: string, threadId: string): void {
    this.#basis.heads.forget(tenant, threadId);
    this.#resident?.forget(tenant, threadId);
  }

  /** A delete's commit: readers start at the marked life before the delete is answered (an as-of read of the old life then 404s). */
  async #markLife(tenant: string, threadId: string, commit: Commit): Promise<void> {
    await this.#o.sweeper.mark(tenant, threadId, commit.firstSeq, commit.at).catch((error: unknown) =>
      warnUnlessReported(log, "marking a deleted thread's life failed", { threadId }, error)
    );
  }

  /** After a durable commit, not holding its answer: sweeps of ended lives, pushed events (`push`), compaction when due. */
  #afterDurable(tenant: string, threadId: string, commit: Commit, newLife: boolean, seq: number, push: boolean): void {
    const { sweeper, background } = this.#o;
    if (isTombstone(commit)) sweeper.ensure(tenant, threadId, commit.firstSeq, background);
    else if (newLife) sweeper.ensure(tenant, threadId, seq, background);
    if (push) this.#o.onDurable(tenant, commit);
    // Compaction outlives the answer: it is no part of the request's trace.
    if (this.#o.compactor.isDue(commit)) background(detached(() => this.#compact(tenant, threadId)));
  }

  /**
   * Best effort, before the writes are answered (a `consistency=cache` read after a 2xx
   * sees the write): the commit is already durable, so nothing here may fail it.
   */
  async #applyCommitted(tenant: string, threadId: string, commit: Commit): Promise<void> {
    const applied = await this.#o.guard.try("apply", (cache) => cache.apply(tenant, [commit]));
    let caughtUp = applied.ok && applied.value >= commit.lastSeq;
    if (applied.ok && !caughtUp) {
      // The cache was behind (another process wrote while it was down): catch it up now.
      caughtUp = (await this.#o.guard.try("repair", () =>
        this.#o.repairer.repairFrom(tenant, threadId, applied.value))).ok;
    }
    if (!caughtUp) this.#o.repairer.markBehind(tenant, threadId);
    this.#o.onCommit(tenant, commit);
  }

  /** Compaction after the answer: a failure only leaves cold reads longer until the next one. */
  async #compact(tenant: string, threadId: string): Promise<void> {
    try {
      await this.#o.compactor.compact(tenant, threadId);
    } catch (error) {
      warnUnlessReported(log, "compaction failed", { threadId }, error);
    }
  }

  /**
   * Answers (or refuses) every write of the group by its outcome; a repeat of a keyed
   * write by the patch that write made: among the group's own, else read back (a rare
   * path: a retry whose first answer was lost).
   */
  async #settle(
    tenant: string,
    threadId: string,
    group: readonly PendingWrite[],
    outcomes: readonly GroupOutcome[],
    appended: readonly Patch[],
  ): Promise<void> {
    const replays: [PendingWrite, number][] = [];
    for (const [index, write] of group.entries()) {
      const outcome = outcomes[index] as GroupOutcome;
      if (outcome.kind === "replay") replays.push([write, outcome.seq]);
      else answer(write, answerOf(outcome, threadId));
    }
    // The repeats last: one read back from the rollout holds no other write's answer.
    const replayed = new Map<number, Patch | null>();
    for (const [, seq] of replays) {
      if (!replayed.has(seq)) replayed.set(seq, appended.find((patch) => patch.seq === seq) ?? null);
    }
    for (const [seq, patch] of replayed) {
      if (patch) continue;
      const [found] = await this.#o.rollout.patchesAfter(tenant, threadId, seq - 1, 1).catch(() => []);
      replayed.set(seq, found?.seq === seq ? found : null);
    }
    for (const [write, seq] of replays) {
      const patch = replayed.get(seq);
      if (patch) answer(write, replayAnswer(patch, threadId));
      else {
        write.reject(
          new ProblemError("unavailable", "the write this key answered cannot be read back; retry", {
            retryAfterSeconds: 1,
          }),
        );
      }
    }
  }

  #residentOnly(): ResidentThreads {
    if (!this.#resident) throw new Error("only a resident writer holds threads");
    return this.#resident;
  }

  #now(): number {
    return this.#o.now().getTime();
  }
}

function answer(write: PendingWrite, answer: Answer): void {
  if (answer.ok) write.resolve(answer.result);
  else write.reject(answer.problem);
}

/** A later task: what is queued now (a put about to leave) goes first. */
function nextTask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
