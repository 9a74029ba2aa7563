import type { ArtifactCache, TargetLookup, ThreadCursor } from "../cache/port.ts";
import type { Artifact, ThreadRef, ThreadState } from "../model/artifact.ts";
import { decideWrite, type WriteCommand, type WriteContext, type WriteDecision } from "../model/decide.ts";
import { ProblemError } from "../model/errors.ts";
import { uuidv7 } from "../model/ids.ts";
import { materialize } from "../model/materialize.ts";
import { eventData, type Patch } from "../model/patch.ts";
import type { Rollout } from "../rollout/rollout.ts";
import { KeyedMutex } from "./keyed-mutex.ts";

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
}

export interface WriteResult {
  /** 201 for a new artifact, 200 for an idempotent create or any update/remove. */
  created: boolean;
  artifact: Artifact;
  thread: ThreadRef;
  op: "add" | "update" | "remove" | "none";
}

export interface ReadResult {
  state: ThreadState;
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
  readonly #writers = new KeyedMutex();

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
    return this.#writers.run(`${tenant}\u0000${threadId}`, () => this.#writeSerialized(tenant, threadId, command));
  }

  async #writeSerialized(tenant: string, threadId: string, command: WriteCommand): Promise<WriteResult> {
    const lookup = targetOf(command);
    // Set once the cache fails us: from then on this write decides on rollout state.
    let rolloutState: ThreadState | null | undefined;
    for (let attempt = 0; attempt < this.#maxAttempts; attempt++) {
      if (attempt > 0) await this.#backoff(attempt);
      let context: WriteContext;
      if (rolloutState === undefined) {
        const cached = await this.#tryCache("writeContext", () => this.#cache.writeContext(tenant, threadId, lookup));
        if (cached.ok) context = cached.value;
        else {
          rolloutState = await this.#rollout.load(tenant, threadId);
          context = contextFromState(rolloutState, lookup);
        }
      } else {
        context = contextFromState(rolloutState, lookup);
      }

      const at = this.#now().toISOString();
      // A refusal or an idempotent answer appends nothing, so no put-if-absent conflict
      // would reveal a stale context: when it was decided on the cache, check that the
      // cache is at the rollout head (it may have missed writes made while it was down,
      // or by a process without it); if not, catch up and decide again.
      const staleCache = async () => rolloutState === undefined && (await this.#rollout.hasPatch(tenant, threadId, context.seq + 1));
      let decision: WriteDecision;
      try {
        if (command.kind !== "create" && context.seq === 0) {
          throw new ProblemError("thread_not_found", `no thread ${threadId}`);
        }
        decision = decideWrite(command, context, {
          threadId,
          at,
          newId: this.#newId,
          maxArtifactsPerThread: this.#limits.maxArtifactsPerThread,
        });
      } catch (error) {
        if (!(error instanceof ProblemError) || !(await staleCache())) throw error;
        rolloutState = await this.#catchUpCache(tenant, threadId, context.seq);
        continue;
      }
      if (decision.kind === "existing") {
        if (await staleCache()) {
          rolloutState = await this.#catchUpCache(tenant, threadId, context.seq);
          continue;
        }
        return { created: false, artifact: decision.artifact, thread: { id: threadId, rolloutSeq: context.seq }, op: "none" };
      }
      const patch: Patch = { v: 1, seq: context.seq + 1, threadId, at, op: decision.op, artifact: decision.artifact };
      if ((await this.#rollout.append(tenant, patch)) === "created") {
        await this.#afterCommit(tenant, patch, rolloutState);
        return {
          created: patch.op === "add",
          artifact: patch.artifact,
          thread: { id: threadId, rolloutSeq: patch.seq },
          op: patch.op,
        };
      }
      // Another writer took seq + 1: learn what it wrote, then decide again.
      if (rolloutState !== undefined) {
        rolloutState = rolloutState ? (await this.#rollout.catchUp(tenant, rolloutState)).state : await this.#rollout.load(tenant, threadId);
      } else {
        rolloutState = await this.#catchUpCache(tenant, threadId, context.seq);
      }
    }
    throw new ProblemError("unavailable", "too much contention on this thread; retry", { retryAfterSeconds: 1 });
  }

  /** Repairs a cache found behind at `cachedSeq`; if the cache fails, the rollout state to decide on instead. */
  async #catchUpCache(tenant: string, threadId: string, cachedSeq: number): Promise<ThreadState | null | undefined> {
    const repaired = await this.#tryCache("repair", () => this.#advanceCache(tenant, threadId, cachedSeq));
    return repaired.ok ? undefined : await this.#rollout.load(tenant, threadId);
  }

  /** Best effort: the patch is already durable, so nothing here may fail the write. */
  async #afterCommit(tenant: string, patch: Patch, rolloutState: ThreadState | null | undefined): Promise<void> {
    let stateAtPatch: ThreadState | null = null;
    if (rolloutState !== undefined) stateAtPatch = materialize(rolloutState, [patch]);
    const applied = await this.#tryCache("apply", () => this.#cache.apply(tenant, [patch]));
    if (applied.ok && applied.value < patch.seq) {
      // The cache was behind (another process wrote while it was down): catch it up now.
      await this.#tryCache("repair", () => this.#advanceCache(tenant, patch.threadId, applied.value));
    }
    if (this.#rollout.shouldSnapshot(patch.seq)) {
      try {
        stateAtPatch ??= await this.#stateAt(tenant, patch.threadId, patch.seq);
        if (stateAtPatch?.seq === patch.seq) await this.#rollout.writeSnapshot(tenant, stateAtPatch);
      } catch (error) {
        this.#logger.warn("snapshot failed", { seq: patch.seq, error: describe(error) });
      }
    }
    this.#onCommit(tenant, patch.threadId, patch.seq);
  }

  async #stateAt(tenant: string, threadId: string, seq: number): Promise<ThreadState | null> {
    const cached = await this.#tryCache("readThread", () => this.#cache.readThread(tenant, threadId));
    if (cached.ok && cached.value?.seq === seq) return cached.value;
    const { base, tail } = await this.#rollout.loadParts(tenant, threadId);
    return materialize(base, tail.filter((p) => p.seq <= seq));
  }

  /**
   * Brings the cache from `cachedSeq` to the rollout head and returns the state at the
   * head (null for a thread with no patch). A thread the cache has never seen is
   * installed from the latest snapshot, so repair costs at most SNAPSHOT_EVERY reads.
   */
  async #repairCache(tenant: string, threadId: string, cachedSeq: number, cached?: ThreadState | null): Promise<ThreadState | null> {
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
    throw new Error(`the cache of thread ${threadId} stays behind the rollout (at seq ${seq}) after ${REPAIR_ATTEMPTS} repairs`);
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

  async readThread(tenant: string, threadId: string, options: { consistency: Consistency; minSeq?: number }): Promise<ReadResult> {
    const cached = await this.#tryCache("readThread", () => this.#cache.readThread(tenant, threadId));
    if (!cached.ok) {
      const state = await this.#rollout.load(tenant, threadId);
      return { state: requireState(state, threadId, options.minSeq), source: "rollout" };
    }
    const state = cached.value;
    const satisfiesMinSeq = options.minSeq === undefined || (state !== null && state.seq >= options.minSeq);
    if (options.consistency === "cache" && state && satisfiesMinSeq) return { state, source: "cache" };

    const seq = state?.seq ?? 0;
    if (!(await this.#rollout.hasPatch(tenant, threadId, seq + 1))) {
      return { state: requireState(state, threadId, options.minSeq), source: "cache" };
    }
    // The cache is behind the rollout: answer from the rollout and repair on the way.
    const repaired = await this.#tryCache("repair", () => this.#repairCache(tenant, threadId, seq, state));
    if (repaired.ok) return { state: requireState(repaired.value, threadId, options.minSeq), source: "repaired" };
    const fresh = await this.#rollout.load(tenant, threadId);
    return { state: requireState(fresh, threadId, options.minSeq), source: "rollout" };
  }

  async getArtifact(tenant: string, threadId: string, artifactId: string): Promise<{ artifact: Artifact; source: ReadSource }> {
    const cached = await this.#tryCache("getArtifact", () => this.#cache.getArtifact(tenant, threadId, artifactId));
    if (cached.ok && !(await this.#rollout.hasPatch(tenant, threadId, cached.value.seq + 1))) {
      if (cached.value.seq === 0) throw new ProblemError("thread_not_found", `no thread ${threadId}`);
      return { artifact: requireArtifact(cached.value.artifact, artifactId), source: "cache" };
    }
    const { state, source } = await this.readThread(tenant, threadId, { consistency: "strong" });
    return { artifact: requireArtifact(state.artifacts.find((a) => a.id === artifactId) ?? null, artifactId), source };
  }

  async listThreads(tenant: string, page: { after: ThreadCursor | null; limit: number }): Promise<ThreadPage> {
    const listed = await this.#tryCache("listThreads", () => this.#cache.listThreads(tenant, { after: page.after, limit: page.limit + 1 }));
    if (!listed.ok) {
      throw new ProblemError("unavailable", "the thread list needs the cache, which is unreachable; retry", { retryAfterSeconds: 1 });
    }
    const threads = listed.value.slice(0, page.limit);
    const last = threads[threads.length - 1];
    const next = listed.value.length > page.limit && last ? { updatedAt: last.updatedAt, threadId: last.threadId } : null;
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
    if (!page.ok || page.value.floor > afterSeq) return this.#rolloutEvents(tenant, threadId, afterSeq, Math.min(limit, page.ok ? page.value.floor - afterSeq : limit));
    if (page.value.events.length > 0 || !(await this.#rollout.hasPatch(tenant, threadId, Math.max(page.value.seq, afterSeq) + 1))) {
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
      if ((error as { fastFail?: unknown } | null)?.fastFail !== true) this.#logger.warn(`cache ${what} failed; using the rollout`, { error: describe(error) });
      return { ok: false };
    }
  }
}

function targetOf(command: WriteCommand): TargetLookup {
  return command.kind === "create"
    ? { by: "identity", artifactType: command.artifactType, identityKey: command.identityKey }
    : { by: "id", artifactId: command.artifactId };
}

function contextFromState(state: ThreadState | null, lookup: TargetLookup): WriteContext {
  if (!state) return { seq: 0, artifactCount: 0, target: null };
  const target =
    lookup.by === "id"
      ? state.artifacts.find((a) => a.id === lookup.artifactId)
      : lookup.identityKey === null
        ? undefined
        : state.artifacts.find((a) => a.artifactType === lookup.artifactType && a.identityKey === lookup.identityKey);
  return { seq: state.seq, artifactCount: state.artifacts.length, target: target ?? null };
}

function requireState(state: ThreadState | null, threadId: string, minSeq: number | undefined): ThreadState {
  if (!state) throw new ProblemError("thread_not_found", `no thread ${threadId}`);
  if (minSeq !== undefined && state.seq < minSeq) {
    throw new ProblemError("thread_not_found", `thread ${threadId} has no patch ${minSeq} (its rollout is at ${state.seq})`);
  }
  return state;
}

function requireArtifact(artifact: Artifact | null, artifactId: string): Artifact {
  if (!artifact) throw new ProblemError("artifact_not_found", `no artifact ${artifactId} in this thread`);
  return artifact;
}

function jitteredBackoff(attempt: number): Promise<void> {
  const ceiling = Math.min(250, 4 * 2 ** attempt);
  return new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
