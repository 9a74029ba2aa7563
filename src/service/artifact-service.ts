import type { ArtifactCache, ThreadCursor } from "../cache/port.ts";
import {
  type Artifact,
  parseThreadJson,
  type ThreadJson,
  type ThreadRef,
  type ThreadState,
  toThreadJson,
} from "../model/artifact.ts";
import {
  decideGroup,
  type GroupContext,
  type GroupOutcome,
  type TargetLookup,
  targetOf,
  type WriteCommand,
} from "../model/decide.ts";
import { ProblemError } from "../model/errors.ts";
import { threadKey, uuidv7 } from "../model/ids.ts";
import { materialize } from "../model/materialize.ts";
import { eventData, type Patch } from "../model/patch.ts";
import type { Rollout } from "../rollout/rollout.ts";
import { GroupQueue } from "./group-queue.ts";
import { KnownHeads } from "./known-heads.ts";

export type ReadSource = "cache" | "rollout" | "repaired";
export type Consistency = "strong" | "cache";

export interface ServiceLimits {
  maxPayloadBytes: number;
  maxArtifactsPerThread: number;
}

export interface ServiceLogger {
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** Called after every commit; wired to the live notifier. Must not throw. */
export type CommitListener = (tenant: string, threadId: string, seq: number) => void;

export interface ServiceOptions {
  rollout: Rollout;
  cache: ArtifactCache;
  limits: ServiceLimits;
  onCommit?: CommitListener;
  logger?: ServiceLogger;
  now?: () => Date;
  newId?: () => string;
  /** Put-if-absent attempts before a write gives up with 503. */
  maxAttempts?: number;
  /** Waits between attempts; injectable so tests need no real sleeps. */
  backoff?: (attempt: number) => Promise<void>;
  /**
   * How often threads whose cache fell behind during a libSQL outage are repaired in the
   * background (ms); 0 turns it off (Workers: nothing outlives a request there, and the
   * next write or strong read repairs instead).
   */
  healEveryMs?: number;
}

export interface WriteResult {
  /** 201 for a new artifact, 200 for an idempotent create or any update/remove. */
  created: boolean;
  artifact: Artifact;
  thread: ThreadRef;
  op: "add" | "update" | "remove" | "none";
}

export interface ReadResult {
  thread: ThreadJson;
  source: ReadSource;
}

/** One event of a thread's log: its seq and the one-line JSON of `artifact-updated`. */
export interface LogEntry {
  seq: number;
  data: string;
}

/** What `repairThread` did to one thread's cache. */
export interface RepairResult {
  /** The cached seq before (0: the cache had no row for the thread). */
  cachedSeq: number;
  /** The cached seq after: the rollout head when the repair was checked. */
  seq: number;
}

export interface ThreadPage {
  threads: ThreadState[];
  next: ThreadCursor | null;
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
 * Writes of one thread committed together at most: enough to absorb every connection
 * of a busy client pool, small enough that one cache batch and one folder of temp files
 * stay small.
 */
const MAX_GROUP = 64;

/** Threads whose head this process remembers at most (~100 bytes each). */
const MAX_KNOWN_HEADS = 10_000;

/** How long a thread another process wrote is decided on cache reads only (see KnownHeads). */
const SHARED_THREAD_MS = 30_000;

/** Threads the background healer remembers at most. */
const MAX_BEHIND = 10_000;

/** Repairs `repairThread` tries before it reports a cache that will not catch up. */
const REPAIR_ATTEMPTS = 3;

/**
 * The write and read paths: the only module that knows the rollout (truth), the
 * cache (fast, possibly behind or down) and the commit listener together.
 */
export class ArtifactService {
  readonly #rollout: Rollout;
  readonly #cache: ArtifactCache;
  readonly #limits: ServiceLimits;
  readonly #onCommit: CommitListener;
  readonly #logger: ServiceLogger;
  readonly #now: () => Date;
  readonly #newId: () => string;
  readonly #maxAttempts: number;
  readonly #backoff: (attempt: number) => Promise<void>;
  readonly #groups = new GroupQueue<PendingWrite>(MAX_GROUP, (_key, group) => this.#commitGroup(group));
  readonly #heads: KnownHeads;
  readonly #healEveryMs: number;
  /** Threads this process wrote while the cache could not take the patches. */
  readonly #behind = new Map<string, { tenant: string; threadId: string }>();
  #healTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: ServiceOptions) {
    this.#rollout = options.rollout;
    this.#cache = options.cache;
    this.#limits = options.limits;
    this.#onCommit = options.onCommit ?? (() => {});
    this.#logger = options.logger ?? { warn: (message, fields) => console.warn(message, fields ?? {}) };
    this.#now = options.now ?? (() => new Date());
    this.#newId = options.newId ?? (() => uuidv7());
    this.#maxAttempts = options.maxAttempts ?? 20;
    this.#backoff = options.backoff ?? jitteredBackoff;
    this.#healEveryMs = options.healEveryMs ?? 0;
    this.#heads = new KnownHeads({
      max: MAX_KNOWN_HEADS,
      sharedForMs: SHARED_THREAD_MS,
      now: () => this.#now().getTime(),
    });
  }

  get limits(): ServiceLimits {
    return this.#limits;
  }

  get rollout(): Rollout {
    return this.#rollout;
  }

  get cache(): ArtifactCache {
    return this.#cache;
  }

  write(tenant: string, threadId: string, command: WriteCommand): Promise<WriteResult> {
    return new Promise((resolve, reject) =>
      this.#groups.push(threadKey(tenant, threadId), { tenant, threadId, command, resolve, reject })
    );
  }

  /** Settles every write of the group: what is left when something throws gets the error. */
  async #commitGroup(group: PendingWrite[]): Promise<void> {
    const first = group[0];
    if (!first) return;
    const left = { pending: group };
    try {
      await this.#writeGroup(first.tenant, first.threadId, left);
    } catch (error) {
      for (const write of left.pending) write.reject(error);
    }
  }

  /**
   * Decides the group's writes in order on one context, appends their patches as
   * consecutive seqs (in order, each put-if-absent), applies them to the cache in one
   * batch, then settles them. Writes behind a lost put-if-absent race are decided
   * again on what the other writer appended; `left.pending` is what is not settled yet.
   */
  async #writeGroup(tenant: string, threadId: string, left: { pending: PendingWrite[] }): Promise<void> {
    // Set once the cache fails us: from then on this group decides on rollout state.
    let rolloutState: ThreadState | null | undefined;
    // Rounds that lost a race (or met a failure): the next one backs off longer each time.
    let attempt = 0;
    // Of those, the ones in a row that committed nothing: only they count toward giving
    // up, so a group that keeps making progress against other processes is never failed.
    let fruitless = 0;
    let contended = false;
    while (left.pending.length > 0) {
      if (contended) {
        if (fruitless >= this.#maxAttempts) {
          throw new ProblemError("unavailable", "too much contention on this thread; retry", { retryAfterSeconds: 1 });
        }
        await this.#backoff(++attempt);
      }
      const commands = left.pending.map((write) => write.command);
      const round = await this.#contextFor(tenant, threadId, commands.map(targetOf), rolloutState);
      const { context } = round;
      rolloutState = round.rolloutState;

      const decided = decideGroup(commands, context, {
        threadId,
        at: this.#now().toISOString(),
        newId: this.#newId,
        maxArtifactsPerThread: this.#limits.maxArtifactsPerThread,
      });
      // A round ends at a snapshot seq, so every snapshot is at a multiple of
      // SNAPSHOT_EVERY (a cold read replays at most that many patches) and is the state
      // the cache holds right after the round. The writes behind it go in the next round.
      const boundary = decided.findIndex((o) => o.kind === "append" && this.#rollout.isSnapshotSeq(o.patch.seq));
      const outcomes = boundary < 0 ? decided : decided.slice(0, boundary + 1);
      const patches = outcomes.flatMap((outcome) => (outcome.kind === "append" ? [outcome.patch] : []));
      if (patches.length === 0) {
        // Refusals and idempotent answers append nothing, so no put-if-absent conflict
        // would reveal a stale context: when it was decided on the cache, check that the
        // cache is at the rollout head (it may have missed writes made while it was down,
        // or by a process without it); if not, catch up and decide again.
        if (rolloutState === undefined && (await this.#rollout.hasPatch(tenant, threadId, context.seq + 1))) {
          this.#heads.shared(tenant, threadId);
          rolloutState = await this.#catchUpCache(tenant, threadId, context.seq);
          contended = true;
          fruitless += 1;
          continue;
        }
        this.#heads.remember(tenant, threadId, { seq: context.seq, artifactCount: context.artifactCount });
        settle(left, outcomes, outcomes.length, threadId);
        continue;
      }

      const appended = await this.#rollout.appendInOrder(tenant, patches);
      const committed = patches.slice(0, appended.created);
      if (committed.length > 0) await this.#applyCommitted(tenant, threadId, committed);
      // Decisions up to the first patch that did not land are final; with none landed,
      // even the ones before it stood on a context nothing has confirmed.
      const firstMissed = patches[appended.created];
      const missedAt = firstMissed === undefined
        ? outcomes.length
        : outcomes.findIndex((o) => o.kind === "append" && o.patch === firstMissed);
      const final = committed.length === 0 ? 0 : missedAt;
      if (committed.length > 0) await this.#snapshotIfDue(tenant, threadId, committed, rolloutState);
      settle(left, outcomes, final, threadId);
      if (appended.stop === "end") {
        if (rolloutState !== undefined) rolloutState = materialize(rolloutState, committed);
        this.#heads.remember(tenant, threadId, {
          seq: context.seq + committed.length,
          artifactCount: context.artifactCount + countDelta(committed),
        });
        contended = false;
        continue;
      }
      if (appended.stop === "exists") this.#heads.shared(tenant, threadId);
      else this.#heads.forget(tenant, threadId);
      if (appended.stop === "error") {
        // The write whose patch failed cannot know whether it landed, so it gets the
        // error (a 503); the ones behind it were never tried and go again.
        const [failed] = left.pending.splice(missedAt - final, 1);
        failed?.reject(appended.error);
        if (left.pending.length === 0) return;
      }

      // Another writer took the seq after ours (or the failed put landed after all):
      // learn what it wrote, then decide again.
      contended = true;
      fruitless = committed.length > 0 ? 0 : fruitless + 1;
      if (rolloutState !== undefined) {
        const known = materialize(rolloutState, committed);
        rolloutState = known
          ? (await this.#rollout.catchUp(tenant, known)).state
          : await this.#rollout.load(tenant, threadId);
      } else {
        rolloutState = await this.#catchUpCache(tenant, threadId, context.seq + committed.length);
      }
    }
  }

  /**
   * The context a round is decided on: for plain creates, the head this process last
   * committed (checked by the put-if-absent of the next seq like any context); else the
   * cache; once the cache has failed this group, the rollout state it carries.
   */
  async #contextFor(
    tenant: string,
    threadId: string,
    lookups: readonly TargetLookup[],
    rolloutState: ThreadState | null | undefined,
  ): Promise<{ context: GroupContext; rolloutState: ThreadState | null | undefined }> {
    if (rolloutState !== undefined) return { context: contextFromState(rolloutState, lookups), rolloutState };
    const known = this.#heads.get(tenant, threadId);
    if (known && lookups.every(needsNoTarget)) {
      return { context: { ...known, targets: lookups.map(() => null) }, rolloutState };
    }
    const cached = await this.#tryCache("writeContext", () => this.#cache.writeContext(tenant, threadId, lookups));
    if (cached.ok) return { context: cached.value, rolloutState };
    const loaded = await this.#rollout.load(tenant, threadId);
    return { context: contextFromState(loaded, lookups), rolloutState: loaded };
  }

  /** Repairs a cache found behind at `cachedSeq`; if the cache fails, the rollout state to decide on instead. */
  async #catchUpCache(tenant: string, threadId: string, cachedSeq: number): Promise<ThreadState | null | undefined> {
    const repaired = await this.#tryCache("repair", () => this.#advanceCache(tenant, threadId, cachedSeq));
    return repaired.ok ? undefined : await this.#rollout.load(tenant, threadId);
  }

  /**
   * Best effort, before the writes are answered (a `consistency=cache` read after a 2xx
   * sees the write): the patches are already durable, so nothing here may fail them.
   */
  async #applyCommitted(tenant: string, threadId: string, patches: readonly Patch[]): Promise<void> {
    const last = patches[patches.length - 1] as Patch;
    const applied = await this.#tryCache("apply", () => this.#cache.apply(tenant, patches));
    let caughtUp = applied.ok && applied.value >= last.seq;
    if (applied.ok && !caughtUp) {
      // The cache was behind (another process wrote while it was down): catch it up now.
      caughtUp = (await this.#tryCache("repair", () => this.#advanceCache(tenant, threadId, applied.value))).ok;
    }
    if (!caughtUp) this.#markBehind(tenant, threadId);
    this.#onCommit(tenant, threadId, last.seq);
  }

  /** Remembers a thread whose cache missed patches, for the background healer (bounded: past it, rebuild or the next read repairs). */
  #markBehind(tenant: string, threadId: string): void {
    if (this.#healEveryMs <= 0) return;
    if (this.#behind.size < MAX_BEHIND) this.#behind.set(threadKey(tenant, threadId), { tenant, threadId });
    this.#healTimer ??= unrefTimer(setTimeout(() => void this.#heal(), this.#healEveryMs));
  }

  /**
   * Repairs the threads the cache fell behind on, once libSQL answers again, so
   * `consistency=cache` reads catch up by themselves, without waiting for a write or a
   * strong read of each thread. Stops at the first failure (libSQL still down) and
   * tries again later.
   */
  async #heal(): Promise<void> {
    for (const [key, { tenant, threadId }] of this.#behind) {
      try {
        await this.repairThread(tenant, threadId);
      } catch {
        break;
      }
      this.#behind.delete(key);
    }
    this.#healTimer = undefined;
    if (this.#behind.size > 0) this.#healTimer = unrefTimer(setTimeout(() => void this.#heal(), this.#healEveryMs));
  }

  /**
   * Best effort: a missing snapshot only makes cold reads longer. Taken before the
   * writes are answered, so whoever saw the 2xx also finds the snapshot.
   */
  async #snapshotIfDue(
    tenant: string,
    threadId: string,
    patches: readonly Patch[],
    rolloutState: ThreadState | null | undefined,
  ): Promise<void> {
    const seq = (patches[patches.length - 1] as Patch).seq;
    if (!this.#rollout.isSnapshotSeq(seq)) return;
    try {
      const thread = rolloutState !== undefined
        ? jsonOf(materialize(rolloutState, patches))
        : await this.#threadAt(tenant, threadId, seq);
      if (thread?.seq === seq) await this.#rollout.writeSnapshot(tenant, thread);
    } catch (error) {
      this.#logger.warn("snapshot failed", { seq, error: describe(error) });
    }
  }

  /** The thread at `seq`: from the cache when it is there (as stored text), else replayed from the rollout. */
  async #threadAt(tenant: string, threadId: string, seq: number): Promise<ThreadJson | null> {
    const cached = await this.#tryCache("readThread", () => this.#cache.readThreadJson(tenant, threadId));
    if (cached.ok && cached.value?.seq === seq) return cached.value;
    const { base, tail } = await this.#rollout.loadParts(tenant, threadId);
    return jsonOf(materialize(base, tail.filter((p) => p.seq <= seq)));
  }

  /**
   * Brings the cache from `cachedSeq` to the rollout head and returns the state at the
   * head (null for a thread with no patch). A thread the cache has never seen is
   * installed from the latest snapshot, so repair costs at most SNAPSHOT_EVERY reads.
   */
  async #repairCache(
    tenant: string,
    threadId: string,
    cachedSeq: number,
    cached?: ThreadState | null,
  ): Promise<ThreadState | null> {
    if (cachedSeq > 0) {
      const base = cached ?? (await this.#cache.readThread(tenant, threadId));
      if (base && base.seq === cachedSeq) {
        const tail = await this.#rollout.readPatches(tenant, threadId, base.seq);
        if (tail.length > 0) await this.#cache.apply(tenant, tail);
        return materialize(base, tail);
      }
    }
    const { base, tail } = await this.#rollout.loadParts(tenant, threadId);
    if (base) await this.#cache.install(tenant, base);
    if (tail.length > 0) await this.#cache.apply(tenant, tail);
    return materialize(base, tail);
  }

  /**
   * Brings the thread's cache to the rollout head, with the repair reads and writes
   * use, and reports the cached seq before and after (`rebuild`). A thread already at
   * head costs one cache seq read and one rollout existence check. Cache failures are
   * thrown, not hidden: the caller wants to know.
   */
  async repairThread(tenant: string, threadId: string): Promise<RepairResult> {
    const cachedSeq = await this.#cache.seq(tenant, threadId);
    let seq = cachedSeq;
    // Bounded: a concurrent installer or writer may move the row between our calls.
    for (let attempt = 0; attempt < REPAIR_ATTEMPTS; attempt++) {
      if (!(await this.#rollout.hasPatch(tenant, threadId, seq + 1))) return { cachedSeq, seq };
      await this.#advanceCache(tenant, threadId, seq);
      seq = await this.#cache.seq(tenant, threadId);
    }
    if (!(await this.#rollout.hasPatch(tenant, threadId, seq + 1))) return { cachedSeq, seq };
    throw new Error(
      `the cache of thread ${threadId} stays behind the rollout (at seq ${seq}) after ${REPAIR_ATTEMPTS} repairs`,
    );
  }

  /**
   * `#repairCache` for callers that need no state back (the write path, the event
   * log, rebuild): a cache that has the thread gets the rollout tail after `cachedSeq`
   * applied on top, without reading the cached thread, whose size grows with the
   * thread, on every lost put-if-absent race. Apply is guarded and idempotent, so a row
   * another writer moved on meanwhile just skips what it already has.
   */
  async #advanceCache(tenant: string, threadId: string, cachedSeq: number): Promise<void> {
    if (cachedSeq > 0) {
      const tail = await this.#rollout.readPatches(tenant, threadId, cachedSeq);
      const last = tail[tail.length - 1];
      if (!last || (await this.#cache.apply(tenant, tail)) >= last.seq) return;
    }
    await this.#repairCache(tenant, threadId, cachedSeq);
  }

  async readThread(
    tenant: string,
    threadId: string,
    options: { consistency: Consistency; minSeq?: number },
  ): Promise<ReadResult> {
    const cached = await this.#tryCache("readThread", () => this.#cache.readThreadJson(tenant, threadId));
    if (!cached.ok) {
      const state = await this.#rollout.load(tenant, threadId);
      return { thread: requireThread(jsonOf(state), threadId, options.minSeq), source: "rollout" };
    }
    const thread = cached.value;
    const satisfiesMinSeq = options.minSeq === undefined || (thread !== null && thread.seq >= options.minSeq);
    if (options.consistency === "cache" && thread && satisfiesMinSeq) return { thread, source: "cache" };

    const seq = thread?.seq ?? 0;
    if (!(await this.#rollout.hasPatch(tenant, threadId, seq + 1))) {
      return { thread: requireThread(thread, threadId, options.minSeq), source: "cache" };
    }
    // The cache is behind the rollout: answer from the rollout and repair on the way.
    const repaired = await this.#tryCache(
      "repair",
      () => this.#repairCache(tenant, threadId, seq, thread && parseThreadJson(thread)),
    );
    if (repaired.ok) {
      return { thread: requireThread(jsonOf(repaired.value), threadId, options.minSeq), source: "repaired" };
    }
    const fresh = await this.#rollout.load(tenant, threadId);
    return { thread: requireThread(jsonOf(fresh), threadId, options.minSeq), source: "rollout" };
  }

  async getArtifact(
    tenant: string,
    threadId: string,
    artifactId: string,
  ): Promise<{ artifact: Artifact; source: ReadSource }> {
    const cached = await this.#tryCache("getArtifact", () => this.#cache.getArtifact(tenant, threadId, artifactId));
    if (cached.ok && !(await this.#rollout.hasPatch(tenant, threadId, cached.value.seq + 1))) {
      if (cached.value.seq === 0) throw new ProblemError("thread_not_found", `no thread ${threadId}`);
      return { artifact: requireArtifact(cached.value.artifact, artifactId), source: "cache" };
    }
    const { thread, source } = await this.readThread(tenant, threadId, { consistency: "strong" });
    return {
      artifact: requireArtifact(parseThreadJson(thread).artifacts.find((a) => a.id === artifactId) ?? null, artifactId),
      source,
    };
  }

  async listThreads(tenant: string, page: { after: ThreadCursor | null; limit: number }): Promise<ThreadPage> {
    const listed = await this.#tryCache(
      "listThreads",
      () => this.#cache.listThreads(tenant, { after: page.after, limit: page.limit + 1 }),
    );
    if (!listed.ok) {
      throw new ProblemError("unavailable", "the thread list needs the cache, which is unreachable; retry", {
        retryAfterSeconds: 1,
      });
    }
    const threads = listed.value.slice(0, page.limit);
    const last = threads[threads.length - 1];
    const next = listed.value.length > page.limit && last
      ? { updatedAt: last.updatedAt, threadId: last.threadId }
      : null;
    return { threads, next };
  }

  /**
   * The thread's event log after `afterSeq` (at most `limit`, contiguous): from the
   * cache's log, from the rollout for seqs the log does not hold (a thread installed
   * from a snapshot) or while the cache is down. An empty page from the cache is
   * checked against the rollout, and a cache found behind is repaired, so events
   * written by a process whose cache was down still arrive.
   */
  async readEvents(tenant: string, threadId: string, afterSeq: number, limit: number): Promise<LogEntry[]> {
    const page = await this.#tryCache("events", () => this.#cache.events(tenant, threadId, afterSeq, limit));
    if (!page.ok || page.value.floor > afterSeq) {
      return this.#rolloutEvents(
        tenant,
        threadId,
        afterSeq,
        Math.min(limit, page.ok ? page.value.floor - afterSeq : limit),
      );
    }
    if (
      page.value.events.length > 0 ||
      !(await this.#rollout.hasPatch(tenant, threadId, Math.max(page.value.seq, afterSeq) + 1))
    ) {
      return page.value.events;
    }
    const repaired = await this.#tryCache("repair", () => this.#advanceCache(tenant, threadId, page.value.seq));
    if (repaired.ok) {
      const again = await this.#tryCache("events", () => this.#cache.events(tenant, threadId, afterSeq, limit));
      if (again.ok && again.value.floor <= afterSeq && again.value.events.length > 0) return again.value.events;
    }
    return this.#rolloutEvents(tenant, threadId, afterSeq, limit);
  }

  /** The seq of the thread's last committed patch, 0 if it has none. */
  async head(tenant: string, threadId: string): Promise<number> {
    const cached = await this.#tryCache("seq", () => this.#cache.seq(tenant, threadId));
    if (cached.ok && !(await this.#rollout.hasPatch(tenant, threadId, cached.value + 1))) return cached.value;
    return (await this.#rollout.load(tenant, threadId))?.seq ?? 0;
  }

  async #rolloutEvents(tenant: string, threadId: string, afterSeq: number, limit: number): Promise<LogEntry[]> {
    const patches = await this.#rollout.readPatches(tenant, threadId, afterSeq, limit);
    return patches.map((patch) => ({ seq: patch.seq, data: eventData(patch) }));
  }

  async health(): Promise<{ cache: "up" | "down"; rollout: "up" | "down" }> {
    const [cache, rollout] = await Promise.all([
      this.#cache.ping().then(
        () => "up" as const,
        () => "down" as const,
      ),
      this.#rollout.store.list("tenants/", { limit: 1 }).then(
        () => "up" as const,
        () => "down" as const,
      ),
    ]);
    return { cache, rollout };
  }

  async #tryCache<T>(what: string, call: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false }> {
    try {
      return { ok: true, value: await call() };
    } catch (error) {
      if (error instanceof ProblemError) throw error;
      // While the cache's breaker is open every call fails fast: that was logged once already.
      if ((error as { fastFail?: unknown } | null)?.fastFail !== true) {
        this.#logger.warn(`cache ${what} failed; using the rollout`, { error: describe(error) });
      }
      return { ok: false };
    }
  }
}

/** A create without an identityKey never matches an existing artifact: it needs no lookup. */
function needsNoTarget(lookup: TargetLookup): boolean {
  return lookup.by === "identity" && lookup.identityKey === null;
}

/** How the artifact count moves over committed patches. */
function countDelta(patches: readonly Patch[]): number {
  let delta = 0;
  for (const patch of patches) delta += patch.op === "add" ? 1 : patch.op === "remove" ? -1 : 0;
  return delta;
}

/** Answers (or refuses) the first `count` pending writes by their outcomes and drops them from `left`. */
function settle(
  left: { pending: PendingWrite[] },
  outcomes: readonly GroupOutcome[],
  count: number,
  threadId: string,
): void {
  const done = left.pending.slice(0, count);
  left.pending = left.pending.slice(count);
  for (const [index, write] of done.entries()) {
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
      case "refused":
        write.reject(outcome.problem);
        break;
    }
  }
}

function contextFromState(state: ThreadState | null, lookups: readonly TargetLookup[]): GroupContext {
  if (!state) return { seq: 0, artifactCount: 0, targets: lookups.map(() => null) };
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

function requireThread(thread: ThreadJson | null, threadId: string, minSeq: number | undefined): ThreadJson {
  if (!thread) throw new ProblemError("thread_not_found", `no thread ${threadId}`);
  if (minSeq !== undefined && thread.seq < minSeq) {
    throw new ProblemError(
      "thread_not_found",
      `thread ${threadId} has no patch ${minSeq} (its rollout is at ${thread.seq})`,
    );
  }
  return thread;
}

function jsonOf(state: ThreadState | null): ThreadJson | null {
  return state && toThreadJson(state);
}

function requireArtifact(artifact: Artifact | null, artifactId: string): Artifact {
  if (!artifact) throw new ProblemError("artifact_not_found", `no artifact ${artifactId} in this thread`);
  return artifact;
}

/** A timer that does not keep the process alive (Node's unref, Deno's unrefTimer). */
function unrefTimer(timer: ReturnType<typeof setTimeout>): ReturnType<typeof setTimeout> {
  if (typeof timer === "object" && timer !== null && "unref" in timer) (timer as { unref(): void }).unref();
  else (globalThis as { Deno?: { unrefTimer?(id: number): void } }).Deno?.unrefTimer?.(timer as unknown as number);
  return timer;
}

function jitteredBackoff(attempt: number): Promise<void> {
  const ceiling = Math.min(250, 4 * 2 ** attempt);
  return new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
