import type { BlobStore } from "../blob/port.ts";
import { type CommitStub, serializeStub } from "./format.ts";
import {
  afterFolder,
  commitKey,
  compactionKey,
  firstSeqOfCommitKey,
  rangeOfDeltaKey,
  seqOfSnapshotKey,
  threadPrefix,
} from "./keys.ts";
import { CompactionObjects } from "./compaction-objects.ts";
import { inBatches, listAll } from "./listing.ts";

/**
 * What a thread's delete leaves below its new life, in the rollout's own key layout:
 * the sweep (service/thread-sweeper.ts) decides when, this knows which objects.
 */
export class PastLives {
  readonly #store: BlobStore;
  readonly #compaction: CompactionObjects;

  constructor(store: BlobStore) {
    this.#store = store;
    this.#compaction = new CompactionObjects(store);
  }

  /**
   * Takes the content of every life before the one starting at `lifeStart` (a tombstone's
   * seq) out of the rollout, keeping every commit key occupied: compaction objects below
   * it are removed, and each commit below it is overwritten by a stub naming `lifeStart`. The
   * stubs tile seqs 1..lifeStart-1 (each reaches to the next key). Keys below
   * `sweptBelow` are stubs of an earlier delete already and stay as they are (they name
   * an older tombstone, itself a stub naming this one), but seq 1's, which always names
   * the latest life (put if absent when missing: a thread whose keys an older build
   * freed gets its anchor back). Idempotent; resolves with the number of objects changed.
   */
  async stubPast(
    tenant: string,
    threadId: string,
    lifeStart: number,
    options: { sweptBelow: number; concurrency: number },
  ): Promise<number> {
    const { concurrency } = options;
    const { commits, derived } = await this.#pastObjects(tenant, threadId, lifeStart);
    const stubs = commits
      .map((firstSeq, i) => ({ firstSeq, lastSeq: (commits[i + 1] ?? lifeStart) - 1, tombstone: lifeStart }))
      .filter((stub) => stub.firstSeq >= options.sweptBelow || stub.firstSeq === 1);
    const anchor = commits[0] === 1
      ? []
      : [{ firstSeq: 1, lastSeq: (commits[0] ?? lifeStart) - 1, tombstone: lifeStart }];
    // Derived objects first (they are the only other copies of the content), then the commits.
    await inBatches(derived, concurrency, (key) => this.#store.delete(key));
    await inBatches(
      stubs,
      concurrency,
      (stub) => this.#store.put(this.#stubKey(tenant, threadId, stub), serializeStub(stub)),
    );
    await inBatches(
      anchor,
      1,
      (stub) => this.#store.putIfAbsent(this.#stubKey(tenant, threadId, stub), serializeStub(stub)),
    );
    // A compactor of the past life removes what it writes once it sees the life ended
    // (compaction.ts), but one killed between its writes and that check leaves them: the
    // chaos test caught a delta written after the listing above by a process killed
    // right after. So the compaction objects are listed again now, after the stubs:
    // whatever such a compactor wrote before this point goes too. (One that writes after
    // it and dies before its check still leaves its objects, until the keys are freed.)
    const late = await this.#pastDerived(tenant, threadId, lifeStart);
    await inBatches(late, concurrency, (key) => this.#store.delete(key));
    return derived.length + stubs.length + anchor.length + late.length;
  }

  /** The compaction objects below the life starting at `lifeStart`: a listing past the commits, and the pointer's get. */
  async #pastDerived(tenant: string, threadId: string, lifeStart: number): Promise<string[]> {
    return (await this.#pastObjects(tenant, threadId, lifeStart, { commits: false })).derived;
  }

  /**
   * After the retention period: removes the stubs below `lifeStart` but the first (seq 1's
   * key, which then covers 1..since-1: a writer that knows nothing of the thread finds
   * its way to the current life from there), and any compaction object left below it.
   * Resolves with the number of objects removed.
   */
  async freePast(tenant: string, threadId: string, lifeStart: number, concurrency: number): Promise<number> {
    const { commits, derived } = await this.#pastObjects(tenant, threadId, lifeStart);
    const anchor: CommitStub = { firstSeq: 1, lastSeq: lifeStart - 1, tombstone: lifeStart };
    await this.#store.put(this.#stubKey(tenant, threadId, anchor), serializeStub(anchor));
    const freed = commits.filter((seq) => seq > 1).map((seq) => commitKey(tenant, threadId, seq));
    await inBatches([...derived, ...freed], concurrency, (key) => this.#store.delete(key));
    return derived.length + freed.length;
  }

  #stubKey(tenant: string, threadId: string, stub: CommitStub): string {
    return commitKey(tenant, threadId, stub.firstSeq);
  }

  /**
   * The commit keys (their first seqs) and compaction objects of the thread below the life
   * starting at `lifeStart`; without `commits`, the listing jumps over the commits folder.
   */
  async #pastObjects(
    tenant: string,
    threadId: string,
    lifeStart: number,
    options: { commits: boolean } = { commits: true },
  ): Promise<{ commits: number[]; derived: string[] }> {
    const prefix = threadPrefix(tenant, threadId);
    const [keys, pointer] = await Promise.all([
      listAll(this.#store, prefix, options.commits ? undefined : afterFolder(prefix, "commits")),
      this.#compaction.readPointer(tenant, threadId),
    ]);
    const commits: number[] = [];
    const derived: string[] = [];
    for (const key of keys) {
      const commit = firstSeqOfCommitKey(key);
      if (commit !== null) {
        if (commit < lifeStart) commits.push(commit);
        continue;
      }
      if (isPastDerived(key, lifeStart)) derived.push(key);
      else if (key === compactionKey(tenant, threadId) && (pointer?.lifeStart ?? 1) < lifeStart) derived.push(key);
    }
    return { commits, derived };
  }
}

/** A delta or snapshot of a life before the one starting at `lifeStart`. */
function isPastDerived(key: string, lifeStart: number): boolean {
  const delta = rangeOfDeltaKey(key);
  if (delta) return delta.firstSeq < lifeStart;
  const snapshot = seqOfSnapshotKey(key);
  return snapshot !== null && snapshot < lifeStart;
}
