import type { ThreadJson, ThreadState } from "../model/artifact.ts";
import type { Commit } from "../model/patch.ts";
import type { BlobStore } from "../blob/port.ts";
import {
  type CompactionPointer,
  CorruptRolloutError,
  parseCommit,
  parseCompaction,
  parseSnapshot,
  serializeCommit,
  serializeCompaction,
  snapshotJson,
} from "./format.ts";
import { compactionKey, deltaKey, deltasPrefix, rangeOfDeltaKey, snapshotKey } from "./keys.ts";
import { listAll } from "./listing.ts";

/**
 * A thread's compaction objects beside its commits (rollout/compaction.ts says what they
 * are): deltas, snapshots and the pointer to them. Derived: deleting them loses nothing.
 */
export class CompactionObjects {
  readonly #store: BlobStore;

  constructor(store: BlobStore) {
    this.#store = store;
  }

  /** Every delta's range, in key (seq) order: one listing per 1,000 deltas. */
  async deltaRanges(tenant: string, threadId: string): Promise<Array<{ firstSeq: number; lastSeq: number }>> {
    const keys = await listAll(this.#store, deltasPrefix(tenant, threadId), undefined);
    return keys.map(rangeOfDeltaKey).filter((r): r is { firstSeq: number; lastSeq: number } => r !== null);
  }

  async readPointer(tenant: string, threadId: string): Promise<CompactionPointer | null> {
    const key = compactionKey(tenant, threadId);
    const text = await this.#store.get(key);
    if (text === null) return null;
    try {
      return parseCompaction(text, key);
    } catch (error) {
      // Derived data: a corrupt pointer is as good as none.
      if (error instanceof CorruptRolloutError) return null;
      throw error;
    }
  }

  writePointer(tenant: string, threadId: string, pointer: CompactionPointer): Promise<void> {
    return this.#store.put(compactionKey(tenant, threadId), serializeCompaction(pointer));
  }

  /** Writes a delta (put-if-absent: one of two compactors racing over the same range wins; both wrote the same). */
  async writeDelta(tenant: string, delta: Commit): Promise<number> {
    const text = serializeCommit(delta);
    await this.#store.putIfAbsent(deltaKey(tenant, delta.threadId, delta.firstSeq, delta.lastSeq), text);
    return byteLength(text);
  }

  async readDelta(tenant: string, threadId: string, firstSeq: number, lastSeq: number): Promise<Commit | null> {
    const key = deltaKey(tenant, threadId, firstSeq, lastSeq);
    const text = await this.#store.get(key);
    if (text === null) return null;
    const delta = parseCommit(text, key, threadId);
    if (delta.firstSeq !== firstSeq || delta.lastSeq !== lastSeq) throw new CorruptRolloutError(key);
    return delta;
  }

  async writeSnapshot(tenant: string, thread: ThreadJson): Promise<number> {
    const text = snapshotJson(thread);
    await this.#store.put(snapshotKey(tenant, thread.threadId, thread.seq), text);
    return byteLength(text);
  }

  async readSnapshot(tenant: string, threadId: string, seq: number): Promise<ThreadState | null> {
    const key = snapshotKey(tenant, threadId, seq);
    const text = await this.#store.get(key);
    if (text === null) return null;
    const state = parseSnapshot(text, key);
    if (state.seq !== seq || state.threadId !== threadId) throw new CorruptRolloutError(key);
    return state;
  }

  /**
   * Compaction objects written for a life a delete has ended meanwhile (a compactor
   * that read the commits before the delete and wrote after its sweep): removed again.
   */
  async remove(
    tenant: string,
    threadId: string,
    written: { delta?: { firstSeq: number; lastSeq: number }; snapshotSeq?: number; pointer: boolean },
  ): Promise<void> {
    const keys = [
      ...(written.delta ? [deltaKey(tenant, threadId, written.delta.firstSeq, written.delta.lastSeq)] : []),
      ...(written.snapshotSeq !== undefined ? [snapshotKey(tenant, threadId, written.snapshotSeq)] : []),
      ...(written.pointer ? [compactionKey(tenant, threadId)] : []),
    ];
    await Promise.all(keys.map((key) => this.#store.delete(key)));
  }
}

const encoder = new TextEncoder();
function byteLength(text: string): number {
  return encoder.encode(text).byteLength;
}
