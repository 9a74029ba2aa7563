import type { Artifact, ThreadRef, ThreadState } from "../model/artifact.ts";
import {
  decideGroup,
  type GroupContext,
  type GroupOutcome,
  type TargetLookup,
  targetOf,
  type WriteCommand,
} from "../model/decide.ts";
import { describeError, ProblemError } from "../model/errors.ts";
import { threadKey } from "../model/ids.ts";
import { materialize } from "../model/materialize.ts";
import { type ArtifactPatch, type Commit, commitOf, isTombstone, type Patch, patchesOf } from "../model/patch.ts";
import type { Compactor } from "../rollout/compaction.ts";
import type { Rollout } from "../rollout/rollout.ts";
import type { CacheGuard, ServiceLogger } from "./cache-guard.ts";
import type { CacheRepairer } from "./cache-repairer.ts";
import type { ThreadSweeper } from "./thread-sweeper.ts";
import { GroupQueue } from "./group-queue.ts";
import { KnownHeads } from "./known-heads.ts";

export interface ServiceLimits {
  maxPayloadBytes: number;
  maxArtifactsPerThread: number;
}

/** Called with every commit this writer made; must not throw. */
export type CommitListener = (tenant: string, commit: Commit) => void;

/** What a write of an artifact (or a fork) answers. */
export interface ArtifactWriteResult {
  /** 201 for a new artifact, 200 for an idempotent create or any update/remove. */
  created: boolean;
  artifact: Artifact;
  thread: ThreadRef;
  op: "add" | "update" | "remove" | "none";
}

/** What a thread's delete answers: the tombstone's seq. */
export interface ThreadDeleteResult {
  created: false;
  thread: ThreadRef;
  op: "delete";
}

export type WriteResult = ArtifactWriteResult | ThreadDeleteResult;

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
   * Keep each thread's state in memory and decide on it: no cache read before a write.
   * For a writer that is the only one of its thread (the Workers sequencer, one per
   * thread): put-if-absent still checks every decision, so another writer only costs a
   * catch-up.
   */
  resident: boolean;
  logger: ServiceLogger;
  /** Runs work that must not hold the answer (compaction); the runtime keeps it alive (Workers: waitUntil). */
  background: (work: Promise<void>) => void;
  now: () => Date;
  newId: () => string;
  /** Rounds in a row that lose the race before a write gives up with 503. */
  maxAttempts: number;
  /**
   * The oldest basis a put may be made on (ms): a quarter of the delete retention (see
   * ThreadSweeper). A deleted life's commit keys are freed only after the retention, so a
   * writer whose head is younger than this can never aim at a freed key: remembered and
   * resident heads older than it are forgotten, a cache row older than it is checked
   * against the life marker, and a round that took longer is decided again.
   */
  freshMs: number;
  /** Waits between rounds; injectable so tests need no real sleeps. */
  backoff: (attempt: number) => Promise<void>;
}

/** A write waiting for its thread's next group. */
interface PendingWrite {
  tenant: string;
  threadId: string;
  command: WriteCommand;
  resolve: (result: WriteResult) => void;
  reject: (error: unknown) => void;
}

/**
 * What a round of a group is decided on. The cache, normally (it is read for the
 * context, and the put-if-absent of the next seq checks it); or a state of the thread
 * this writer holds: the resident one, or, once the cache has failed this group, the
 * one read from the rollout, carried from round to round.
 */
type Basis = { from: "cache" } | { from: "state"; state: ThreadState | null; at: number };

/** How long a resident head counts as the rollout's without asking the store again (ms). */
const RESIDENT_HEAD_FRESH_MS = 1000;

/**
 * Writes of one thread committed together at most: enough to absorb every connection
 * of a busy client pool, small enough that one commit object and one cache batch stay small.
 */
const MAX_GROUP = 64;

/** Threads whose head this process remembers at most (~100 bytes each). */
const MAX_KNOWN_HEADS = 10_000;

/** How long a thread another process wrote is decided on cache reads only (see KnownHeads). */
const SHARED_THREAD_MS = 30_000;

/**
 * The write path. Writes of one thread queue in this process and go in groups: a group is
 * decided on one context, in order (each write on the state the ones before it leave),
 * and committed as ONE object at `commits/{head + 1}`, if absent; then applied to the
 * cache in one batch and answered. A lost race (another process took that seq) costs a
 * catch-up and a new decision; nothing of the group is written twice or half.
 */
export class GroupWriter {
  readonly #o: GroupWriterOptions;
  // A thread's delete goes alone: its commit is the tombstone, and nothing else shares it.
  readonly #groups = new GroupQueue<PendingWrite>(
    MAX_GROUP,
    (_key, group) => this.#commitGroup(group),
    (write) => write.command.kind === "deleteThread",
  );
  readonly #heads: KnownHeads;
  /** Resident mode: each thread's state as of its last commit or check, and when the store last confirmed it. */
  readonly #resident = new Map<string, { state: ThreadState | null; confirmedAt: number }>();
  /** Resident mode: each thread's last cache apply still running, so the next one goes after it. */
  readonly #applying = new Map<string, Promise<void>>();

  constructor(options: GroupWriterOptions) {
    this.#o = options;
    this.#heads = new KnownHeads({
      max: MAX_KNOWN_HEADS,
      sharedForMs: SHARED_THREAD_MS,
      freshForMs: options.freshMs,
      now: () => options.now().getTime(),
    });
  }

  write(tenant: string, threadId: string, command: WriteCommand): Promise<WriteResult> {
    return new Promise((resolve, reject) =>
      this.#groups.push(threadKey(tenant, threadId), { tenant, threadId, command, resolve, reject })
    );
  }

  /** Settles every write of the group: if something throws, every write gets the error. */
  async #commitGroup(group: PendingWrite[]): Promise<void> {
    const first = group[0];
    if (!first) return;
    try {
      await this.#writeGroup(first.tenant, first.threadId, group);
    } catch (error) {
      for (const write of group) write.reject(error);
    }
  }

  async #writeGroup(tenant: string, threadId: string, group: PendingWrite[]): Promise<void> {
    const commands = group.map((write) => write.command);
    const lookups = commands.map(targetOf);
    let basis: Basis = this.#o.resident ? await this.#residentBasis(tenant, threadId) : { from: "cache" };
    for (let attempt = 0;; attempt++) {
      if (attempt > 0) {
        if (attempt >= this.#o.maxAttempts) {
          throw new ProblemError("unavailable", "too much contention on this thread; retry", { retryAfterSeconds: 1 });
        }
        await this.#o.backoff(attempt);
      }
      const roundAt = this.#o.now().getTime();
      const round = await this.#contextFor(
        tenant,
        threadId,
        lookups,
        basis,
        commands.every((c) => c.kind === "create"),
      );
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
      const patches: Patch[] = outcomes.flatMap((outcome): Patch[] =>
        outcome.kind === "append" || outcome.kind === "deleted"
          ? [outcome.patch]
          : outcome.kind === "fork"
          ? outcome.patches
          : []
      );

      if (patches.length === 0) {
        // Refusals and idempotent answers append nothing, so no put-if-absent would
        // reveal a stale context: it is checked against the head, whatever it was decided
        // on (the cache may have missed commits made while it was down, or by a process
        // without it; a resident state learns of another writer only this way or by
        // losing a race). Behind: catch up and decide again. One existence check, on
        // answers that write nothing.
        if (await this.#o.rollout.hasCommitAfter(tenant, threadId, context.seq)) {
          this.#heads.shared(tenant, threadId);
          if (!round.fromKnownHead) basis = await this.#catchUp(tenant, threadId, context.seq, basis);
          if (this.#o.resident && basis.from === "state") this.#setResident(tenant, threadId, basis.state, basis.at);
          continue;
        }
        this.#heads.remember(tenant, threadId, { seq: context.seq, artifactCount: context.artifactCount });
        if (this.#o.resident && basis.from === "state") this.#setResident(tenant, threadId, basis.state);
        return settle(group, outcomes, threadId);
      }

      if (this.#o.now().getTime() - basisAt > this.#o.freshMs) {
        // Decided on a head too old to aim with (a process paused mid-round): decide again on a fresh one.
        this.#heads.forget(tenant, threadId);
        this.#resident.delete(threadKey(tenant, threadId));
        basis = this.#o.resident ? await this.#residentBasis(tenant, threadId) : { from: "cache" };
        continue;
      }
      const commit = commitOf(patches);
      // A store failure leaves it unknown whether the commit landed: every write of the
      // group gets the error (a 503), and the next writer finds out by put-if-absent.
      const appended = await this.#o.rollout.append(tenant, commit).catch((error: unknown) => {
        this.#heads.forget(tenant, threadId);
        this.#resident.delete(threadKey(tenant, threadId));
        throw error;
      });
      if (appended === "created") {
        this.#heads.remember(tenant, threadId, {
          seq: commit.lastSeq,
          artifactCount: countAfter(context.artifactCount, patches),
        });
        if (isTombstone(commit)) {
          // Readers start at the marked life before the delete is answered (an as-of read
          // of the old life then 404s at once); the sweep of the old life follows.
          await this.#o.sweeper.mark(tenant, threadId, commit.firstSeq, commit.at).catch((error: unknown) =>
            this.#o.logger.warn("marking a deleted thread's life failed", { threadId, error: describeError(error) })
          );
          this.#o.sweeper.ensure(tenant, threadId, commit.firstSeq, this.#o.background);
        } else if (context.deleted) {
          // The first write of a new life: whatever the old one left is swept (once per process).
          this.#o.sweeper.ensure(tenant, threadId, context.seq, this.#o.background);
        }
        this.#o.onDurable(tenant, commit);
        if (this.#o.compactor.isDue(commit)) this.#o.background(this.#compact(tenant, threadId));
        if (this.#o.resident && basis.from === "state") {
          // The thread's one writer answers as soon as the commit is durable: the next
          // group is decided on the state in memory, strong reads take the head from it
          // (and its state while the cache lags), and the cache follows in commit order
          // (a chain per thread) without holding anyone's answer.
          this.#setResident(tenant, threadId, materialize(basis.state, patches));
          this.#chainApply(tenant, threadId, () => this.#applyCommitted(tenant, threadId, commit));
          return settle(group, outcomes, threadId);
        }
        // A created commit is the thread's, whatever happens next: no key a writer can aim
        // at is ever freed (see freshMs), so it landed in the life it was decided in.
        await this.#applyCommitted(tenant, threadId, commit);
        return settle(group, outcomes, threadId);
      }
      // Another writer took the seq after our context: learn what it wrote, then decide
      // again (after a remembered head, on the cache: the next round reads it).
      this.#heads.shared(tenant, threadId);
      if (!round.fromKnownHead) basis = await this.#catchUp(tenant, threadId, context.seq, basis);
      if (this.#o.resident && basis.from === "state") this.#setResident(tenant, threadId, basis.state, basis.at);
    }
  }

  /**
   * The context a round is decided on: for plain creates, the head this process last
   * committed (checked by the put-if-absent of the next seq like any context); else the
   * cache; or the state the group carries (resident, or read once the cache failed).
   */
  async #contextFor(
    tenant: string,
    threadId: string,
    lookups: readonly TargetLookup[],
    basis: Basis,
    onlyCreates: boolean,
  ): Promise<{ context: GroupContext; basis: Basis; fromKnownHead: boolean }> {
    if (basis.from === "state") return { context: contextFromState(basis.state, lookups), basis, fromKnownHead: false };
    const known = this.#heads.get(tenant, threadId);
    // Forks and deletes look nothing up either, but are decided on whether the thread lives: read it.
    if (known && onlyCreates && lookups.every(needsNoTarget)) {
      return { context: { ...known, targets: lookups.map(() => null) }, basis, fromKnownHead: true };
    }
    const cached = await this.#o.guard.try("writeContext", (cache) => cache.writeContext(tenant, threadId, lookups));
    if (cached.ok) {
      const { updatedAt, ...context } = cached.value;
      // A row this old may predate a delete whose stubs are gone by now (a cache restored
      // from a backup, or one that missed the delete): the life marker tells. No row needs
      // no check: seq 1's key is never freed, so a put there finds any thread that was.
      const old = updatedAt !== null && this.#o.now().getTime() - Date.parse(updatedAt) > this.#o.freshMs;
      if (!old || !(await this.#missedDelete(tenant, threadId, context.seq))) {
        return { context, basis, fromKnownHead: false };
      }
    }
    const state = await this.#o.rollout.load(tenant, threadId);
    const at = this.#o.now().getTime();
    return { context: contextFromState(state, lookups), basis: { from: "state", state, at }, fromKnownHead: false };
  }

  /** Whether the thread's current life starts after `seq`: a head at `seq` missed a delete. */
  async #missedDelete(tenant: string, threadId: string, seq: number): Promise<boolean> {
    return (await this.#o.rollout.lifeBoundary(tenant, threadId)) > seq;
  }

  /** After a lost race at `seq`: the commits since, onto the cache (or onto the carried state once the cache failed). */
  async #catchUp(tenant: string, threadId: string, seq: number, basis: Basis): Promise<Basis> {
    if (basis.from === "state" && basis.state) {
      const tail = await this.#o.rollout.followCommits(tenant, threadId, basis.state.seq);
      return { from: "state", state: materialize(basis.state, patchesOf(tail)), at: this.#o.now().getTime() };
    }
    if (basis.from === "cache") {
      const tail = seq > 0 ? await this.#o.rollout.followCommits(tenant, threadId, seq) : undefined;
      const caughtUp = await this.#o.guard.try("repair", () => this.#o.repairer.advance(tenant, threadId, seq, tail));
      if (caughtUp.ok) return basis;
    }
    const state = await this.#o.rollout.load(tenant, threadId);
    return { from: "state", state, at: this.#o.now().getTime() };
  }

  /** Resident mode: a basis of the thread's state in memory, and when the store last confirmed it. */
  async #residentBasis(tenant: string, threadId: string): Promise<Basis> {
    const state = await this.#residentState(tenant, threadId);
    const at = this.#resident.get(threadKey(tenant, threadId))?.confirmedAt ?? this.#o.now().getTime();
    return { from: "state", state, at };
  }

  /** Resident mode: the thread as this writer holds it (at or past the cache, which follows it). */
  async residentThread(tenant: string, threadId: string): Promise<ThreadState | null> {
    return this.#residentState(tenant, threadId);
  }

  /**
   * The thread's head in resident mode: from memory while the store confirmed it within
   * the last second (its own commits confirm it), else after one existence check (and a
   * catch-up if another writer moved it). Cheaper than a check per strong read.
   */
  async head(tenant: string, threadId: string): Promise<number> {
    const resident = this.#resident.get(threadKey(tenant, threadId));
    if (resident && this.#o.now().getTime() - resident.confirmedAt < RESIDENT_HEAD_FRESH_MS) {
      return resident.state?.seq ?? 0;
    }
    return (await this.#residentState(tenant, threadId, true))?.seq ?? 0;
  }

  /**
   * The resident state, loaded on first use (the cache's copy, checked against the
   * rollout by one existence check; the rollout's when the cache is behind or down), and
   * checked again when `confirm` asks (a head older than a second).
   */
  async #residentState(tenant: string, threadId: string, confirm = false): Promise<ThreadState | null> {
    const key = threadKey(tenant, threadId);
    let resident = this.#resident.get(key);
    if (resident && this.#o.now().getTime() - resident.confirmedAt > this.#o.freshMs) {
      // Too old to follow from (the keys after it may have been freed since): load it again.
      this.#resident.delete(key);
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
    this.#setResident(tenant, threadId, state);
    return state;
  }

  /** Runs `apply` after the thread's previous one (kept alive as background work). */
  #chainApply(tenant: string, threadId: string, apply: () => Promise<void>): void {
    const key = threadKey(tenant, threadId);
    const previous = this.#applying.get(key) ?? Promise.resolve();
    const next = previous.then(apply).catch(() => {});
    this.#applying.set(key, next);
    this.#o.background(next);
    void next.then(() => {
      if (this.#applying.get(key) === next) this.#applying.delete(key);
    });
  }

  /** Never moves a resident state back (a slow check finishing after a newer commit). */
  #setResident(
    tenant: string,
    threadId: string,
    state: ThreadState | null,
    confirmedAt = this.#o.now().getTime(),
  ): void {
    const key = threadKey(tenant, threadId);
    const current = this.#resident.get(key);
    if (current && (current.state?.seq ?? 0) > (state?.seq ?? 0)) return;
    this.#resident.set(key, { state, confirmedAt });
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
        this.#o.repairer.advance(tenant, threadId, applied.value))).ok;
    }
    if (!caughtUp) this.#o.repairer.markBehind(tenant, threadId);
    this.#o.onCommit(tenant, commit);
  }

  /** Compaction after the answer: a failure only leaves cold reads longer until the next one. */
  async #compact(tenant: string, threadId: string): Promise<void> {
    try {
      await this.#o.compactor.compact(tenant, threadId);
    } catch (error) {
      this.#o.logger.warn("compaction failed", { threadId, error: describeError(error) });
    }
  }
}

/** A create without an identityKey never matches an existing artifact: it needs no lookup. */
function needsNoTarget(lookup: TargetLookup): boolean {
  return lookup.by === "identity" && lookup.identityKey === null;
}

/** The artifact count after committed patches, from `count` before them (a delete empties the thread). */
function countAfter(count: number, patches: readonly Patch[]): number {
  let after = count;
  for (const patch of patches) {
    after = patch.op === "delete" ? 0 : after + (patch.op === "add" ? 1 : patch.op === "remove" ? -1 : 0);
  }
  return after;
}

/** Answers (or refuses) every write of the group by its outcome. */
function settle(group: readonly PendingWrite[], outcomes: readonly GroupOutcome[], threadId: string): void {
  for (const [index, write] of group.entries()) {
    const outcome = outcomes[index] as GroupOutcome;
    switch (outcome.kind) {
      case "append": {
        const { patch } = outcome;
        write.resolve({
          created: patch.op === "add",
          artifact: patch.artifact,
          thread: { id: threadId, rolloutSeq: patch.seq },
          op: patch.op,
        });
        break;
      }
      case "existing":
        write.resolve({
          created: false,
          artifact: outcome.artifact,
          thread: { id: threadId, rolloutSeq: outcome.seq },
          op: "none",
        });
        break;
      case "fork": {
        const last = outcome.patches[outcome.patches.length - 1] as ArtifactPatch;
        write.resolve({
          created: true,
          artifact: last.artifact,
          thread: { id: threadId, rolloutSeq: last.seq },
          op: "add",
        });
        break;
      }
      case "deleted":
        write.resolve({ created: false, thread: { id: threadId, rolloutSeq: outcome.patch.seq }, op: "delete" });
        break;
      case "refused":
        write.reject(outcome.problem);
        break;
    }
  }
}

function contextFromState(state: ThreadState | null, lookups: readonly TargetLookup[]): GroupContext {
  if (!state) return { seq: 0, artifactCount: 0, targets: lookups.map(() => null) };
  if (state.deleted) return { seq: state.seq, artifactCount: 0, targets: lookups.map(() => null), deleted: true };
  const targets = lookups.map((lookup) => {
    const found = lookup.by === "id"
      ? state.artifacts.find((a) => a.id === lookup.artifactId)
      : lookup.identityKey === null
      ? undefined
      : state.artifacts.find((a) => a.artifactType === lookup.artifactType && a.identityKey === lookup.identityKey);
    return found ?? null;
  });
  return { seq: state.seq, artifactCount: state.artifacts.length, targets };
}
