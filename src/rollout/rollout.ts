import type { ThreadState } from "../model/artifact.ts";
import { materialize } from "../model/materialize.ts";
import { type Commit, type Patch, patchesOf } from "../model/patch.ts";
import type { BlobStore } from "../blob/port.ts";
import {
  type CommitStub,
  type CompactionPointer,
  CorruptRolloutError,
  isStub,
  isStubText,
  type LifeMarker,
  parseCommitObject,
  parseLife,
  serializeCommit,
  serializeLife,
} from "./format.ts";
import {
  afterFolder,
  commitKey,
  commitsPrefix,
  firstSeqOfCommitKey,
  lifeKey,
  rangeOfDeltaKey,
  seqOfSnapshotKey,
  TENANTS_PREFIX,
  threadPrefix,
  threadsPrefix,
} from "./keys.ts";
import { threadKey } from "../model/ids.ts";
import { CompactionObjects } from "./compaction-objects.ts";
import { folders, inParallel, listAll } from "./listing.ts";
import { PastLives } from "./past-lives.ts";
import { RecentCommits } from "./recent-commits.ts";

/** Commit boundaries remembered (see `patchesAfter`), over every thread of the process. */
const MAX_REMEMBERED_BOUNDARIES = 10_000;
/** Serialized commits held for compaction (see `recentCommits`), over every thread of the process. */
const RECENT_COMMIT_BYTES = 16 * 1024 * 1024;

/** Where a thread's current life starts, and what compaction holds for it: what a history read starts from. */
export interface HistoryIndex {
  /** The seq the current life's commits follow (see `lifeBoundary`). */
  boundary: number;
  /** Every delta's range, in seq order. */
  ranges: Array<{ firstSeq: number; lastSeq: number }>;
  /** The seqs of its snapshots, ascending. */
  snapshots: number[];
}

/** What a cold read assembles: the compacted base (snapshot + deltas) and the commits after it. */
export interface ThreadParts {
  /** The thread at the pointer's seq (null: nothing compacted yet). */
  base: ThreadState | null;
  /** The commits after `base`, consecutive. */
  tail: Commit[];
}

/**
 * The commit log of every thread over a BlobStore: the source of truth. One object per
 * commit at `commits/{firstSeq}`, created only if absent, so the commit after seq `s` is
 * always at key `s + 1`; compaction objects (deltas, snapshots and the pointer to them)
 * beside it are derived. Knows keys and formats, not write policy (the service's job).
 *
 * Round trips of a cold read, at any history length: the pointer; then the snapshot, its
 * deltas and the listing of the commits after them, at once; then those commits, at once.
 */
export class Rollout {
  readonly #store: BlobStore;
  /** The thread's compaction objects (deltas, snapshots, the pointer): derived from the commits. */
  readonly compaction: CompactionObjects;
  readonly #past: PastLives;
  /**
   * Seqs known to end a commit, per thread (`threadKey NUL seq`): lets `patchesAfter`
   * trust a miss. Two generations of at most MAX_REMEMBERED_BOUNDARIES / 2 each: when
   * the newer fills up, the older is dropped whole. (A Map trimmed from its front at
   * every append cost ~1.3% of the main thread over 64 busy threads: V8 leaves each
   * deleted entry as a hole its next front iteration steps over until the table is
   * rebuilt, thousands per call at 10,000 entries.)
   */
  #boundaries = new Set<string>();
  #olderBoundaries = new Set<string>();
  /** The commits this rollout created lately, per thread: compaction's tail without reading it back. */
  readonly #recent = new RecentCommits(RECENT_COMMIT_BYTES);

  constructor(store: BlobStore) {
    this.#store = store;
    this.compaction = new CompactionObjects(store);
    this.#past = new PastLives(store);
  }

  /**
   * Creates the commit at its first seq, if absent: "exists" means another writer took
   * that seq. A put that fails may still have landed (a lost response): the key is read
   * back once, and holding our very text, the commit is ours; otherwise the error stands.
   */
  async append(tenant: string, commit: Commit): Promise<"created" | "exists"> {
    const key = commitKey(tenant, commit.threadId, commit.firstSeq);
    const text = serializeCommit(commit);
    let result: "created" | "exists";
    try {
      result = await this.#store.putIfAbsent(key, text);
    } catch (error) {
      const stored = await this.#store.get(key).catch(() => null);
      // A stub there: some commit landed and its life was deleted since; whether it was
      // ours, its content no longer tells, so the outcome stays unknown (the error stands).
      if (stored === null || isStubText(stored)) throw error;
      result = stored === text ? "created" : "exists";
    }
    if (result === "created") {
      this.#rememberBoundary(tenant, commit.threadId, commit.lastSeq);
      this.#recent.add(threadKey(tenant, commit.threadId), commit, text.length);
    }
    return result;
  }

  /**
   * The thread's latest commits this rollout created, consecutive, oldest first (empty
   * when it holds none): a tail compaction need not read back. Runs broken by another
   * writer's commits start afresh, and a budget bounds what is held over every thread.
   */
  recentCommits(tenant: string, threadId: string): readonly Commit[] {
    return this.#recent.commits(threadKey(tenant, threadId));
  }

  /** Compaction has covered the thread through `seq`: its recent commits up to there are let go. */
  releaseRecent(tenant: string, threadId: string, seq: number): void {
    this.#recent.releaseThrough(threadKey(tenant, threadId), seq);
  }

  /** Whether a commit follows seq `seq` (a commit boundary): one existence check. */
  hasCommitAfter(tenant: string, threadId: string, seq: number): Promise<boolean> {
    return this.#store.exists(commitKey(tenant, threadId, seq + 1));
  }

  /**
   * The commit that starts at `firstSeq`, or null. A key whose life was deleted holds a
   * stub: then the answer is the delete commit that ended that life (the tombstone the
   * stub names, followed through later deletes), so a reader or writer standing in a
   * deleted life moves straight to where the thread went on.
   */
  async commitAt(tenant: string, threadId: string, firstSeq: number): Promise<Commit | null> {
    const stored = await this.#commitObject(tenant, threadId, firstSeq);
    if (stored === null || !isStub(stored)) return stored;
    return this.commitAt(tenant, threadId, stored.tombstone);
  }

  /** What the key of `firstSeq` holds, as stored: a commit, a stub, or nothing. */
  async #commitObject(tenant: string, threadId: string, firstSeq: number): Promise<Commit | CommitStub | null> {
    const key = commitKey(tenant, threadId, firstSeq);
    const text = await this.#store.get(key);
    return text === null ? null : this.#parseAt(tenant, threadId, firstSeq, text);
  }

  #parseAt(tenant: string, threadId: string, firstSeq: number, text: string): Commit | CommitStub {
    const key = commitKey(tenant, threadId, firstSeq);
    const stored = parseCommitObject(text, key, threadId);
    if (stored.firstSeq !== firstSeq) throw new CorruptRolloutError(key);
    if (!isStub(stored)) this.#rememberBoundary(tenant, threadId, stored.lastSeq);
    return stored;
  }

  /**
   * The commits after boundary `afterSeq`, by following keys (`afterSeq + 1`, then each
   * one's `lastSeq + 1`): one get per commit, in sequence. For catching up after a lost
   * race, where the tail is a commit or two; `listCommits` for long tails.
   */
  async followCommits(tenant: string, threadId: string, afterSeq: number): Promise<Commit[]> {
    const commits: Commit[] = [];
    for (let next = afterSeq + 1;;) {
      const commit = await this.commitAt(tenant, threadId, next);
      if (!commit) return commits;
      commits.push(commit);
      next = commit.lastSeq + 1;
    }
  }

  /**
   * The commits after boundary `afterSeq`, consecutive: one listing (a page per 1,000
   * commits), then their gets at once. Stops at the first hole (none in a healthy
   * rollout: commits are created put-if-absent at head + 1).
   */
  async listCommits(tenant: string, threadId: string, afterSeq: number, max = Infinity): Promise<Commit[]> {
    const keys = await listAll(
      this.#store,
      commitsPrefix(tenant, threadId),
      commitKey(tenant, threadId, afterSeq),
      max,
    );
    const starts = keys.map(firstSeqOfCommitKey).filter((seq): seq is number => seq !== null);
    // Fetched at once, parsed in order: what lies past a hole is never looked at.
    const texts = await inParallel(starts, (seq) => this.#store.get(commitKey(tenant, threadId, seq)));
    const chain: Commit[] = [];
    let at = afterSeq;
    for (const [index, text] of texts.entries()) {
      if (text === null || starts[index] !== at + 1) break;
      const stored = this.#parseAt(tenant, threadId, at + 1, text);
      if (isStub(stored)) {
        // A deleted life: the thread goes on at the tombstone that ended it.
        return chain.concat(await this.listCommits(tenant, threadId, stored.tombstone - 1, max - chain.length));
      }
      chain.push(stored);
      at = stored.lastSeq;
    }
    return chain;
  }

  /**
   * The commits after boundary `afterSeq` when few are expected (the tail after the
   * compaction pointer, a cache a little behind): followed key by key on a store with
   * local reads, listed on an object store (one round trip, then the gets at once).
   */
  tailAfter(tenant: string, threadId: string, afterSeq: number): Promise<Commit[]> {
    return this.#store.localReads
      ? this.followCommits(tenant, threadId, afterSeq)
      : this.listCommits(tenant, threadId, afterSeq);
  }

  /**
   * Patches after `afterSeq` (whole commits, stopping once `limit` is reached): the event
   * log as the rollout holds it. A reader at a commit boundary (the usual case: the cache
   * and every feed stand at one) costs one get; a resume point inside a commit is found
   * through the compaction pointer and a listing.
   */
  async patchesAfter(tenant: string, threadId: string, afterSeq: number, limit: number): Promise<Patch[]> {
    const next = await this.commitAt(tenant, threadId, afterSeq + 1);
    if (next) {
      const patches = [...next.patches];
      if (patches.length < limit) {
        // A commit holds one patch at least: `limit` more commits are always enough.
        for (const commit of await this.listCommits(tenant, threadId, next.lastSeq, limit - patches.length)) {
          if (patches.length >= limit) break;
          patches.push(...commit.patches);
        }
      }
      return patches;
    }
    // Nothing right after: a swept past (the current life's tombstone is next), the head, or inside a commit.
    const boundary = await this.lifeBoundary(tenant, threadId);
    if (afterSeq < boundary) return this.patchesAfter(tenant, threadId, boundary, limit);
    if (afterSeq === 0 || this.#isBoundary(tenant, threadId, afterSeq)) return [];
    const containing = await this.#containing(tenant, threadId, afterSeq + 1);
    if (!containing) return [];
    const rest = containing.patches.filter((patch) => patch.seq > afterSeq);
    if (rest.length >= limit) return rest;
    return rest.concat(await this.patchesAfter(tenant, threadId, containing.lastSeq, limit - rest.length));
  }

  /** Where the thread's current life starts, once a delete has been marked (null: never deleted, or not marked yet). */
  async readLife(tenant: string, threadId: string): Promise<LifeMarker | null> {
    const key = lifeKey(tenant, threadId);
    const text = await this.#store.get(key);
    return text === null ? null : parseLife(text, key);
  }

  writeLife(tenant: string, threadId: string, life: LifeMarker): Promise<void> {
    return this.#store.put(lifeKey(tenant, threadId), serializeLife(life));
  }

  /**
   * The boundary the current life's commits follow: the seq before its tombstone once the
   * life is marked (what is left below it, mid-sweep, is never read), else 0 (a chain from
   * seq 1 replays through any delete it holds).
   */
  async lifeBoundary(tenant: string, threadId: string): Promise<number> {
    const life = await this.readLife(tenant, threadId);
    return life ? life.lifeStart - 1 : 0;
  }

  /**
   * The thread's life boundary, delta ranges and snapshot seqs at once: ONE listing of
   * the thread's folder past its commits (`compaction.json`, `deltas/`, `life.json`,
   * `snapshots/` sort after `commits/`, which the listing jumps over unread), plus a get
   * of the life marker only when it is listed (a thread deleted and written again). On
   * Workers a history read makes two requests fewer than two listings and that get,
   * subrequests the platform counts.
   */
  async historyIndex(tenant: string, threadId: string): Promise<HistoryIndex> {
    const prefix = threadPrefix(tenant, threadId);
    const keys = await listAll(this.#store, prefix, afterFolder(prefix, "commits"));
    const life = lifeKey(tenant, threadId);
    const ranges: HistoryIndex["ranges"] = [];
    const snapshots: number[] = [];
    let marked = false;
    for (const key of keys) {
      const range = rangeOfDeltaKey(key);
      const snapshotSeq = range ? null : seqOfSnapshotKey(key);
      if (range) ranges.push(range);
      else if (snapshotSeq !== null) snapshots.push(snapshotSeq);
      else if (key === life) marked = true;
    }
    return { boundary: marked ? await this.lifeBoundary(tenant, threadId) : 0, ranges, snapshots };
  }

  /** See PastLives.stubPast: a deleted life's content goes, its commit keys stay occupied. */
  stubPast(
    tenant: string,
    threadId: string,
    lifeStart: number,
    options: { sweptBelow: number; concurrency: number },
  ): Promise<number> {
    return this.#past.stubPast(tenant, threadId, lifeStart, options);
  }

  /** See PastLives.freePast: after the retention, the stubs go but seq 1's. */
  freePast(tenant: string, threadId: string, lifeStart: number, concurrency: number): Promise<number> {
    return this.#past.freePast(tenant, threadId, lifeStart, concurrency);
  }

  /** The thread at its head (null: no commit). */
  async load(tenant: string, threadId: string): Promise<ThreadState | null> {
    const { base, tail } = await this.loadParts(tenant, threadId);
    return materialize(base, patchesOf(tail));
  }

  /**
   * The pieces `load` joins, for callers that store them separately (the cache's repair
   * installs `base` and applies `tail`). Compaction objects are only a shortcut: one
   * missing or corrupt makes this replay the commits from the start instead.
   */
  async loadParts(tenant: string, threadId: string): Promise<ThreadParts> {
    // One round trip: what compaction holds, and where the current life starts (no
    // knowledge of a thread never means "a new thread": a deleted one goes on after its tombstone).
    const [pointer, boundary] = await Promise.all([
      this.compaction.readPointer(tenant, threadId),
      this.lifeBoundary(tenant, threadId),
    ]);
    if (pointer && (pointer.lifeStart ?? 1) > boundary) {
      try {
        const [base, tail] = await Promise.all([
          this.baseAt(tenant, threadId, pointer),
          this.tailAfter(tenant, threadId, pointer.seq),
        ]);
        // (A pointer of a life a delete ended still replays right: the tail runs through its tombstone.)
        if (base !== undefined) return { base, tail };
      } catch (error) {
        if (!(error instanceof CorruptRolloutError)) throw error;
      }
    }
    // From the life's start: its tombstone (the key of seq 1, never removed, leads there too).
    return { base: null, tail: await this.listCommits(tenant, threadId, boundary) };
  }

  /** The thread as the pointer's snapshot and deltas leave it (at `pointer.seq`); undefined if one of them is gone. */
  async baseAt(tenant: string, threadId: string, pointer: CompactionPointer): Promise<ThreadState | null | undefined> {
    const [snapshot, ...deltas] = await inParallel<number, ThreadState | Commit | null>(
      [-1, ...pointer.deltas.keys()],
      (index) => {
        if (index < 0) {
          return pointer.snapshot
            ? this.compaction.readSnapshot(tenant, threadId, pointer.snapshot.seq)
            : Promise.resolve(null);
        }
        const range = pointer.deltas[index] as CompactionPointer["deltas"][number];
        return this.compaction.readDelta(tenant, threadId, range.firstSeq, range.lastSeq);
      },
    );
    if ((pointer.snapshot && !snapshot) || deltas.some((delta) => delta === null)) return undefined;
    return materialize(snapshot as ThreadState | null, patchesOf(deltas as Commit[]));
  }

  /** The commit holding `seq`: after the pointer, among the listed commits; before it, in a delta. */
  async #containing(tenant: string, threadId: string, seq: number): Promise<Commit | null> {
    const pointer = await this.compaction.readPointer(tenant, threadId);
    if (pointer && seq <= pointer.seq) {
      const range = pointer.deltas.find((d) => d.firstSeq <= seq && seq <= d.lastSeq) ??
        (await this.#olderDelta(tenant, threadId, seq));
      const delta = range && (await this.compaction.readDelta(tenant, threadId, range.firstSeq, range.lastSeq));
      if (delta) return delta;
    }
    const from = pointer && seq > pointer.seq ? pointer.seq : 0;
    const keys = await listAll(this.#store, commitsPrefix(tenant, threadId), commitKey(tenant, threadId, from));
    const starts = keys.map(firstSeqOfCommitKey).filter((s): s is number => s !== null && s <= seq);
    const start = starts[starts.length - 1];
    if (start === undefined) return null;
    const commit = await this.commitAt(tenant, threadId, start);
    return commit && commit.lastSeq >= seq ? commit : null;
  }

  /** A delta before the pointer's that holds `seq`, from the listing of every delta. */
  async #olderDelta(
    tenant: string,
    threadId: string,
    seq: number,
  ): Promise<{ firstSeq: number; lastSeq: number } | null> {
    const ranges = await this.compaction.deltaRanges(tenant, threadId);
    return ranges.find((r) => r.firstSeq <= seq && seq <= r.lastSeq) ?? null;
  }

  /** Whether the store answers (one listing of at most one key). */
  async reachable(): Promise<boolean> {
    return this.#store.list(TENANTS_PREFIX, { limit: 1 }).then(
      () => true,
      () => false,
    );
  }

  /** Every tenant with something in the rollout, in key order: one `list` call per tenant. */
  listTenants(): AsyncGenerator<string> {
    return folders(this.#store, TENANTS_PREFIX);
  }

  /**
   * Every thread of `tenant` with something in the rollout, in key order (of
   * "<id>/", so "a-b" before "a"): one `list` call per thread, however many commits
   * each holds.
   */
  listThreads(tenant: string): AsyncGenerator<string> {
    return folders(this.#store, threadsPrefix(tenant));
  }

  #rememberBoundary(tenant: string, threadId: string, seq: number): void {
    if (this.#boundaries.size >= MAX_REMEMBERED_BOUNDARIES / 2) {
      this.#olderBoundaries = this.#boundaries;
      this.#boundaries = new Set();
    }
    this.#boundaries.add(`${threadKey(tenant, threadId)}\u0000${seq}`);
  }

  #isBoundary(tenant: string, threadId: string, seq: number): boolean {
    const key = `${threadKey(tenant, threadId)}\u0000${seq}`;
    return this.#boundaries.has(key) || this.#olderBoundaries.has(key);
  }
}
