import type { ThreadState } from "../model/artifact.ts";
import { materialize } from "../model/materialize.ts";
import { type Patch, parsePatch, parseSnapshot, serializePatch, type Snapshot, toSnapshot } from "../model/patch.ts";
import type { BlobStore, PutIfAbsentResult } from "../blob/port.ts";
import { patchesPrefix, patchKey, seqOfKey, snapshotKey, snapshotsPrefix } from "./keys.ts";

/** Gets run this many at a time when a tail is read: enough to hide object-store latency, bounded for memory. */
const READ_CONCURRENCY = 16;
const LIST_PAGE = 1000;

export interface RolloutOptions {
  snapshotEvery: number;
}

/**
 * The patch log of every thread over a BlobStore: the source of truth. Knows keys and
 * formats, not write policy (that is the service's job).
 */
export class Rollout {
  readonly store: BlobStore;
  readonly snapshotEvery: number;

  constructor(store: BlobStore, options: RolloutOptions) {
    this.store = store;
    this.snapshotEvery = options.snapshotEvery;
  }

  /** Writes patch `patch.seq` only if no patch has that seq yet. */
  append(tenant: string, patch: Patch): Promise<PutIfAbsentResult> {
    return this.store.putIfAbsent(patchKey(tenant, patch.threadId, patch.seq), serializePatch(patch));
  }

  hasPatch(tenant: string, threadId: string, seq: number): Promise<boolean> {
    return this.store.exists(patchKey(tenant, threadId, seq));
  }

  async getPatch(tenant: string, threadId: string, seq: number): Promise<Patch | null> {
    const key = patchKey(tenant, threadId, seq);
    const text = await this.store.get(key);
    return text === null ? null : parsePatch(text, key);
  }

  /**
   * Patches after `afterSeq`, in order, stopping at the first hole (there is none in
   * a healthy rollout, since seqs are claimed put-if-absent from 1 up) or at `limit`.
   */
  async readPatches(tenant: string, threadId: string, afterSeq: number, limit = Infinity): Promise<Patch[]> {
    const prefix = patchesPrefix(tenant, threadId);
    const patches: Patch[] = [];
    let startAfter = patchKey(tenant, threadId, afterSeq);
    let expected = afterSeq + 1;
    while (patches.length < limit) {
      const pageLimit = Math.min(LIST_PAGE, limit - patches.length);
      const keys = await this.store.list(prefix, { startAfter, limit: pageLimit });
      const contiguous: string[] = [];
      for (const key of keys) {
        if (seqOfKey(key) !== expected) break;
        contiguous.push(key);
        expected++;
      }
      const page = await mapBounded(contiguous, READ_CONCURRENCY, async (key) => {
        const text = await this.store.get(key);
        if (text === null) throw new Error(`listed patch vanished: ${key}`);
        return parsePatch(text, key);
      });
      patches.push(...page);
      if (contiguous.length < keys.length || keys.length < pageLimit) break;
      startAfter = keys[keys.length - 1] as string;
    }
    return patches;
  }

  async latestSnapshot(tenant: string, threadId: string): Promise<Snapshot | null> {
    // Snapshot keys sort by seq; page through to the last one.
    const prefix = snapshotsPrefix(tenant, threadId);
    let last: string | undefined;
    for (;;) {
      const keys = await this.store.list(prefix, { startAfter: last, limit: LIST_PAGE });
      if (keys.length === 0) break;
      last = keys[keys.length - 1];
      if (keys.length < LIST_PAGE) break;
    }
    if (last === undefined) return null;
    const text = await this.store.get(last);
    return text === null ? null : parseSnapshot(text, last);
  }

  writeSnapshot(tenant: string, state: ThreadState): Promise<void> {
    return this.store.put(snapshotKey(tenant, state.threadId, state.seq), JSON.stringify(toSnapshot(state)));
  }

  shouldSnapshot(seq: number): boolean {
    return this.snapshotEvery > 0 && seq % this.snapshotEvery === 0;
  }

  /** The thread at its rollout head: latest snapshot + the tail after it. Null if it has no patch. */
  async load(tenant: string, threadId: string): Promise<ThreadState | null> {
    const { base, tail } = await this.loadParts(tenant, threadId);
    return materialize(base, tail);
  }

  /** The pieces `load` joins, for callers that store them separately (the cache's repair). */
  async loadParts(tenant: string, threadId: string): Promise<{ base: ThreadState | null; tail: Patch[] }> {
    const snapshot = await this.latestSnapshot(tenant, threadId);
    const base = snapshot ? stripVersion(snapshot) : null;
    return { base, tail: await this.readPatches(tenant, threadId, base?.seq ?? 0) };
  }

  /** `state` advanced to the rollout head. */
  async catchUp(tenant: string, state: ThreadState): Promise<{ state: ThreadState; patches: Patch[] }> {
    const patches = await this.readPatches(tenant, state.threadId, state.seq);
    return { state: materialize(state, patches) ?? state, patches };
  }
}

function stripVersion(snapshot: Snapshot): ThreadState {
  const { v: _v, ...state } = snapshot;
  return state;
}

async function mapBounded<T, R>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}
