import type { ThreadState } from "../model/artifact.ts";
import { materialize } from "../model/materialize.ts";
import { type Commit, type Patch, patchesOf } from "../model/patch.ts";
import { CorruptRolloutError } from "./format.ts";
import type { Rollout } from "./rollout.ts";

/**
 * A thread's past, from the rollout alone (the cache holds only the present): the state
 * right after any seq, and every patch. Deltas are never deleted and chain from seq 1
 * (every commit is in exactly one), and snapshots sit at delta ends, so both are read in
 * three round trips at any history length: the listing of the thread's compaction
 * objects and life marker (`Rollout.historyIndex`); the snapshot at or before the seq,
 * the deltas after it and the listing of the commits past the last delta; those
 * commits. A compaction object that is missing or corrupt (derived data: deleting one
 * loses nothing) makes it replay the commits instead.
 */

interface Range {
  firstSeq: number;
  lastSeq: number;
}

/** The longest run of `ranges` that is consecutive from `start` (1, or the current life's tombstone). */
function chainFromStart(ranges: readonly Range[], start: number): Range[] {
  const chain: Range[] = [];
  let at = start - 1;
  for (const range of ranges) {
    if (range.firstSeq !== at + 1) break;
    chain.push(range);
    at = range.lastSeq;
  }
  return chain;
}

/** The thread right after `seq` (its `seq` is exactly `seq`), or null when the rollout does not reach it. */
export async function stateAt(
  rollout: Rollout,
  tenant: string,
  threadId: string,
  seq: number,
): Promise<ThreadState | null> {
  if (seq < 1) return null;
  // One round trip: where the current life starts, and what compaction holds.
  const { boundary, ranges, snapshots } = await rollout.historyIndex(tenant, threadId);
  // Before the current life (its tombstone included) there is nothing: it was deleted.
  if (seq <= boundary) return null;
  const fromCompaction = await compactedStateAt(rollout, tenant, threadId, seq, { boundary, ranges, snapshots });
  const state = fromCompaction === undefined
    ? materialize(null, upTo(patchesOf(await rollout.listCommits(tenant, threadId, boundary, seq - boundary)), seq))
    : fromCompaction;
  return state && state.seq === seq && !state.deleted ? state : null;
}

/** Every patch of the thread's current life, in seq order, its tombstone first if it has one (empty: none). */
export async function allPatches(rollout: Rollout, tenant: string, threadId: string): Promise<Patch[]> {
  const { ranges, boundary } = await rollout.historyIndex(tenant, threadId);
  const chain = chainFromStart(ranges, boundary + 1);
  const end = chain[chain.length - 1]?.lastSeq ?? boundary;
  const [deltas, tail] = await Promise.all([
    readDeltas(rollout, tenant, threadId, chain),
    rollout.tailAfter(tenant, threadId, end),
  ]);
  const patches = deltas === undefined
    ? patchesOf(await rollout.listCommits(tenant, threadId, boundary))
    : patchesOf([...deltas, ...tail]);
  // A life not marked yet (no life.json): what follows its last tombstone.
  const lastDelete = patches.findLastIndex((patch) => patch.op === "delete");
  return lastDelete > 0 ? patches.slice(lastDelete) : patches;
}

/** undefined: some compaction object is gone or unreadable (replay the commits instead). */
async function compactedStateAt(
  rollout: Rollout,
  tenant: string,
  threadId: string,
  seq: number,
  listed: { boundary: number; ranges: readonly Range[]; snapshots: readonly number[] },
): Promise<ThreadState | null | undefined> {
  const { boundary, ranges, snapshots } = listed;
  const chain = chainFromStart(ranges, boundary + 1);
  const ends = new Set(chain.map((range) => range.lastSeq));
  const snapshotSeq = snapshots.filter((s) => s <= seq && s > boundary && ends.has(s)).pop() ?? 0;
  const needed = chain.filter((range) => range.firstSeq > snapshotSeq && range.firstSeq <= seq);
  const end = chain[chain.length - 1]?.lastSeq ?? boundary;
  try {
    const [snapshot, deltas, tail] = await Promise.all([
      snapshotSeq > 0 ? rollout.compaction.readSnapshot(tenant, threadId, snapshotSeq) : Promise.resolve(null),
      readDeltas(rollout, tenant, threadId, needed),
      seq > end ? rollout.listCommits(tenant, threadId, end, seq - end) : Promise.resolve([]),
    ]);
    if ((snapshotSeq > 0 && !snapshot) || deltas === undefined) return undefined;
    return materialize(snapshot, upTo(patchesOf([...deltas, ...tail]), seq));
  } catch (error) {
    if (error instanceof CorruptRolloutError) return undefined;
    throw error;
  }
}

async function readDeltas(
  rollout: Rollout,
  tenant: string,
  threadId: string,
  ranges: readonly Range[],
): Promise<Commit[] | undefined> {
  const deltas = await Promise.all(
    ranges.map((r) => rollout.compaction.readDelta(tenant, threadId, r.firstSeq, r.lastSeq)),
  );
  return deltas.every((delta) => delta !== null) ? (deltas as Commit[]) : undefined;
}

function upTo(patches: readonly Patch[], seq: number): Patch[] {
  return patches.filter((patch) => patch.seq <= seq);
}
