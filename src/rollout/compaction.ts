/**
 * Compaction: what keeps a cold read bounded without rewriting the thread on every Nth
 * write. Two levels beside the commits, both derived (deleting them loses nothing):
 *
 * - a **delta** (`deltas/{first}-{last}.json`) is the commits after the previous delta
 *   concatenated into one object (the same shape as a commit), written once the tail
 *   has crossed a multiple of `everyPatches` seqs; like Delta Lake's `x.y.compacted.json`;
 * - a **snapshot** (`snapshots/{seq}.json`) is the whole thread, written at a delta's end
 *   only once the deltas since the previous snapshot hold at least as many bytes as the
 *   snapshot itself, so snapshots grow with what was written, not with how often (and a
 *   thread is only weighed for one when updates and removes make one likely to pay).
 *
 * The pointer (`compaction.json`, like Delta's `_last_checkpoint`) names the latest
 * snapshot and the deltas after it, so a cold read gets them at once with the listing of
 * the tail (fewer than ~`everyPatches` seqs when compaction keeps up): three round trips
 * at any history length.
 *
 * Bytes: every commit is in exactly one delta (deltas <= commits), and every snapshot is
 * no larger than the deltas written since the one before (snapshots <= deltas): the
 * rollout holds at most 3x the commits' own bytes. Compaction runs after the commit is
 * answered (off the write's critical path); racing compactors in two processes at worst
 * write a delta twice or leave one unreferenced, which costs bytes, never correctness.
 */
import { type Commit, commitOf, isTombstone, patchesOf } from "../model/patch.ts";
import { materialize } from "../model/materialize.ts";
import { toThreadJson } from "../model/artifact.ts";
import { threadKey } from "../model/ids.ts";
import type { CompactionPointer, DeltaRef } from "./format.ts";
import type { Rollout } from "./rollout.ts";

export interface CompactionOptions {
  /** A delta once the commits after the last one cross a multiple of this many seqs. */
  everyPatches: number;
  /** The churn since the last snapshot must reach at least this many bytes before another is tried (default 0). */
  minSnapshotBytes?: number;
}

const DEFAULT_MIN_SNAPSHOT_BYTES = 0;
/** A snapshot's text around its artifacts: format, thread id, timestamps, seq. */
const SNAPSHOT_ENVELOPE_BYTES = 512;

export interface CompactionResult {
  /** The delta written, if any. */
  delta: { firstSeq: number; lastSeq: number; bytes: number } | null;
  /** The snapshot written, if any. */
  snapshot: { seq: number; bytes: number } | null;
}

export class Compactor {
  readonly #rollout: Rollout;
  readonly #everyPatches: number;
  readonly #minSnapshotBytes: number;
  /** Threads being compacted by this process, and whether another pass was asked for meanwhile. */
  readonly #running = new Map<string, { again: boolean; done: Promise<void> }>();

  constructor(rollout: Rollout, options: CompactionOptions) {
    this.#rollout = rollout;
    this.#everyPatches = Math.max(1, options.everyPatches);
    this.#minSnapshotBytes = options.minSnapshotBytes ?? DEFAULT_MIN_SNAPSHOT_BYTES;
  }

  /** The cadence: a delta once the tail crosses a multiple of this many seqs. */
  get everyPatches(): number {
    return this.#everyPatches;
  }

  /** Whether committing `commit` makes compaction due: it crossed a multiple of `everyPatches`. Stateless, so any process or isolate agrees. */
  isDue(commit: Pick<Commit, "firstSeq" | "lastSeq">): boolean {
    return Math.floor((commit.firstSeq - 1) / this.#everyPatches) < Math.floor(commit.lastSeq / this.#everyPatches);
  }

  /**
   * Compacts the thread now, once at a time per thread in this process (a call while one
   * runs asks for one more pass after it). Resolves when done; rejects with the store's
   * error (callers running it in the background log it: a missed compaction only makes
   * cold reads longer until the next one).
   */
  compact(tenant: string, threadId: string): Promise<void> {
    const key = threadKey(tenant, threadId);
    const running = this.#running.get(key);
    if (running) {
      running.again = true;
      return running.done;
    }
    const entry = { again: false, done: Promise.resolve() };
    entry.done = (async () => {
      try {
        do {
          entry.again = false;
          await this.compactOnce(tenant, threadId);
        } while (entry.again);
      } finally {
        this.#running.delete(key);
      }
    })();
    this.#running.set(key, entry);
    return entry.done;
  }

  /**
   * One pass: the tail after the pointer becomes a delta, and a snapshot when due. When
   * this process created that tail (the rollout's recent commits cover it), it is not
   * read back: the pass costs the pointer's get, the delta's put, the pointer's put and
   * the life marker's get. Measured: ~13 requests fewer per pass on Workers at groups of 8
   * patches and a cadence of 64 (edge bench); on the fs store over 64 threads, one get
   * per create fewer (a pass used to follow its 64 commits key by key).
   */
  async compactOnce(tenant: string, threadId: string): Promise<CompactionResult> {
    const rollout = this.#rollout;
    const stored = await rollout.compaction.readPointer(tenant, threadId);
    let pointer: CompactionPointer = stored ?? { seq: 0, snapshot: null, deltas: [] };
    let tail = knownTail(rollout.recentCommits(tenant, threadId), pointer.seq) ??
      await rollout.tailAfter(tenant, threadId, pointer.seq);
    if (tail.length === 0) {
      // Nothing after the pointer: the head, or a deleted thread whose past (this pointer's
      // life) was swept. Each life is compacted on its own, from its tombstone.
      const life = await rollout.readLife(tenant, threadId);
      if (life && life.lifeStart > (pointer.lifeStart ?? 1)) {
        pointer = { lifeStart: life.lifeStart, seq: life.lifeStart - 1, snapshot: null, deltas: [] };
        tail = await rollout.tailAfter(tenant, threadId, pointer.seq);
      }
    }
    if (tail[0] && isTombstone(tail[0])) {
      // A delete: its life starts here.
      pointer = { lifeStart: tail[0].firstSeq, seq: tail[0].firstSeq - 1, snapshot: null, deltas: [] };
    }
    // A delta never reaches past the next tombstone: that starts the next life (and pass).
    const nextTombstone = tail.findIndex((commit, i) => i > 0 && isTombstone(commit));
    if (nextTombstone > 0) tail = tail.slice(0, nextTombstone);
    if (tail.length === 0) return { delta: null, snapshot: null };
    const delta = commitOf(patchesOf(tail));
    const bytes = await rollout.compaction.writeDelta(tenant, delta);
    const changes = delta.patches.filter((patch) => patch.op !== "add").length;
    const written: DeltaRef = {
      firstSeq: delta.firstSeq,
      lastSeq: delta.lastSeq,
      bytes,
      churn: Math.round((bytes * changes) / delta.patches.length),
    };
    const deltas = [...pointer.deltas, written];
    const lifeOf = pointer.lifeStart === undefined ? {} : { lifeStart: pointer.lifeStart };
    let next: CompactionPointer = { ...lifeOf, seq: delta.lastSeq, snapshot: pointer.snapshot, deltas };
    let snapshot: CompactionResult["snapshot"] = null;
    if (this.#snapshotMayPay(pointer, deltas)) {
      const base = await rollout.baseAt(tenant, threadId, pointer);
      const state = base === undefined ? undefined : materialize(base, delta.patches);
      if (state) {
        // The snapshot keeps the recent Idempotency-Keys, so a cold load still honours them.
        const keys = state.recentKeys ?? [];
        const thread = { ...toThreadJson(state), ...(keys.length > 0 ? { recentKeys: keys } : {}) };
        // Weighed before writing: a snapshot larger than the deltas it replaces would break the byte bound.
        const sinceSnapshot = deltas.reduce((sum, d) => sum + d.bytes, 0);
        const keyBytes = keys.length > 0 ? estimateBytes(JSON.stringify(keys)) : 0;
        if (estimateBytes(thread.artifactsJson) + keyBytes + SNAPSHOT_ENVELOPE_BYTES <= sinceSnapshot) {
          snapshot = { seq: state.seq, bytes: await rollout.compaction.writeSnapshot(tenant, thread) };
          next = { ...lifeOf, seq: state.seq, snapshot, deltas: [] };
        }
      }
    }
    await rollout.compaction.writePointer(tenant, threadId, next);
    rollout.releaseRecent(tenant, threadId, next.seq);
    // A delete may have ended this life while it was compacted, its sweep listing the
    // thread before these writes landed: then they go again, so no copy of a deleted
    // life's content outlives its sweep. (A sweep that lists after them removes them
    // itself: it marks the life before it lists, and this check reads the mark after.)
    const life = await rollout.readLife(tenant, threadId);
    if (life && life.lifeStart > delta.firstSeq) {
      await rollout.compaction.remove(tenant, threadId, {
        delta: written,
        ...(snapshot ? { snapshotSeq: snapshot.seq } : {}),
        pointer: true,
      });
      return { delta: null, snapshot: null };
    }
    return { delta: written, snapshot };
  }

  /**
   * Whether a snapshot could now be both allowed (no larger than the deltas since the
   * last) and worth it: the thread is materialized to weigh it only then. Adds grow the
   * thread about as much as they weigh, so only updates and removes (churn) can make the
   * deltas outweigh the thread: the first snapshot is tried at once, later ones once the
   * churn since the last outweighs it. A thread that only grows keeps its deltas, which
   * then hold about what a snapshot would.
   */
  #snapshotMayPay(pointer: CompactionPointer, deltas: readonly DeltaRef[]): boolean {
    if (!pointer.snapshot) return true;
    const churn = deltas.reduce((sum, d) => sum + d.churn, 0);
    return churn >= Math.max(this.#minSnapshotBytes, pointer.snapshot.bytes);
  }
}

/**
 * The known commits after boundary `afterSeq` up to the last one known, or null when they
 * do not start right after it, or hold a delete (the rollout's view of a deleted life is
 * its tombstone, after a sweep: read it there).
 */
function knownTail(known: readonly Commit[], afterSeq: number): Commit[] | null {
  const start = known.findIndex((commit) => commit.firstSeq === afterSeq + 1);
  if (start < 0) return null;
  const tail = known.slice(start);
  for (let i = 1; i < tail.length; i++) {
    if ((tail[i] as Commit).firstSeq !== (tail[i - 1] as Commit).lastSeq + 1) return null;
  }
  return tail.some(isTombstone) ? null : tail;
}

/** UTF-8 bytes of JSON text, without encoding it (a snapshot's text can be megabytes). */
function estimateBytes(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) bytes += code >= 0x800 && (code < 0xd800 || code > 0xdfff) ? 2 : 1;
  }
  return bytes;
}
