import type { ThreadJson, ThreadState } from "../model/artifact.ts";
import { materialize } from "../model/materialize.ts";
import { parsePatch, parseSnapshot, type Patch, serializePatch, type Snapshot, snapshotJson } from "../model/patch.ts";
import { type BlobStore, type InOrderResult, putIfAbsentInOrder } from "../blob/port.ts";
import { afterFolder, patchKey, snapshotKey, snapshotsPrefix, TENANTS_PREFIX, threadsPrefix } from "./keys.ts";

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

  /**
   * Appends consecutive patches of one thread, each put-if-absent, in seq order: a
   * patch is never written unless the one before it was, so a conflict or a failure
   * leaves a prefix of them committed and no hole.
   */
  appendInOrder(tenant: string, patches: readonly Patch[]): Promise<InOrderResult> {
    return putIfAbsentInOrder(
      this.store,
      patches.map((patch) => ({ key: patchKey(tenant, patch.threadId, patch.seq), body: serializePatch(patch) })),
    );
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
   * Read by key, not by listing: a listing costs the whole patch folder on a filesystem
   * (O(history): 10,000 names to skip after a snapshot), while a tail is usually short.
   * Gets run in growing windows (1, 2, 4 … READ_CONCURRENCY), so an empty tail costs
   * one get and a long one still hides object-store latency.
   */
  async readPatches(tenant: string, threadId: string, afterSeq: number, limit = Infinity): Promise<Patch[]> {
    const patches: Patch[] = [];
    let next = afterSeq + 1;
    let window = 1;
    while (patches.length < limit) {
      const keys = Array.from(
        { length: Math.min(window, limit - patches.length) },
        (_, i) => patchKey(tenant, threadId, next + i),
      );
      const texts = await Promise.all(keys.map((key) => this.store.get(key)));
      for (const [i, text] of texts.entries()) {
        if (text === null) return patches;
        patches.push(parsePatch(text, keys[i] as string));
      }
      next += keys.length;
      window = Math.min(window * 2, READ_CONCURRENCY);
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

  writeSnapshot(tenant: string, thread: ThreadJson): Promise<void> {
    return this.store.put(snapshotKey(tenant, thread.threadId, thread.seq), snapshotJson(thread));
  }

  /** Whether the writer of patch `seq` also writes the snapshot at it: every SNAPSHOT_EVERY-th. */
  isSnapshotSeq(seq: number): boolean {
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

  /** Every tenant with something in the rollout, in key order: one `list` call per tenant. */
  listTenants(): AsyncGenerator<string> {
    return this.#folders(TENANTS_PREFIX);
  }

  /**
   * Every thread of `tenant` with something in the rollout, in key order (of
   * "<id>/", so "a-b" before "a"): one `list` call per thread, however many patches
   * each holds.
   */
  listThreads(tenant: string): AsyncGenerator<string> {
    return this.#folders(threadsPrefix(tenant));
  }

  /** The folder names right under `prefix`: list one key, then jump past its folder. */
  async *#folders(prefix: string): AsyncGenerator<string> {
    let startAfter: string | undefined;
    for (;;) {
      const [key] = await this.store.list(prefix, startAfter === undefined ? { limit: 1 } : { startAfter, limit: 1 });
      if (key === undefined) return;
      const rest = key.slice(prefix.length);
      const slash = rest.indexOf("/");
      if (slash <= 0) {
        // An object right under the prefix (none is written there): step over it.
        startAfter = key;
        continue;
      }
      const name = rest.slice(0, slash);
      yield name;
      startAfter = afterFolder(prefix, name);
    }
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
