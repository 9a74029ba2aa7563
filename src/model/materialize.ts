import type { Artifact, ThreadState } from "./artifact.ts";
import { recordKeys } from "./idempotency.ts";
import type { ArtifactPatch, Patch } from "./patch.ts";

/** Patches handed to `materialize` must continue the state without a hole. */
export class PatchGapError extends Error {
  constructor(expected: number, got: number) {
    super(`patch gap: expected seq ${expected}, got ${got}`);
    this.name = "PatchGapError";
  }
}

/**
 * Where each artifact id sits in a state's `artifacts`, shared by the states that
 * materialize made from one another by adds and updates only (an add appends, an update
 * replaces in place: positions never move along such a chain). Kept beside the arrays, not
 * in ThreadState: states are plain data that go into JSON, the cache and `structuredClone`.
 *
 * Why: a thread's one writer (the resident mode on Workers) continues its state after every
 * commit, and copying every artifact into a fresh Map cost ~0.4 ms a group at 4,000
 * artifacts, between one put coming back and the next leaving. With the index a group of k
 * adds costs a copy of the array and k lookups.
 *
 * An index may have been written by several chains from one base (a group decided again
 * after a lost race), so a position is trusted only where that state's array holds the id
 * there; otherwise the array is searched. An id not in the index is in none of the arrays
 * sharing it: every array's artifacts were indexed when it was made, and nothing is ever
 * deleted from an index (a remove or a delete takes the full path, which starts none).
 */
const positions = new WeakMap<readonly Artifact[], Map<string, number>>();

function positionsOf(artifacts: readonly Artifact[]): Map<string, number> {
  let index = positions.get(artifacts);
  if (!index) {
    index = new Map();
    for (let i = 0; i < artifacts.length; i++) index.set((artifacts[i] as Artifact).id, i);
    positions.set(artifacts, index);
  }
  return index;
}

function positionIn(artifacts: readonly Artifact[], index: Map<string, number>, id: string): number {
  const at = index.get(id);
  if (at === undefined) return -1;
  if (artifacts[at]?.id === id) return at;
  return artifacts.findIndex((artifact) => artifact.id === id);
}

/**
 * Applies `patches` (contiguous, starting at `base.seq + 1`, or at 1 without a base;
 * only a delete may come later, since it ends whatever came before) to `base`. Pure and deterministic: the same inputs always give an equal state, and
 * `base` is not modified.
 */
export function materialize(base: ThreadState | null, patches: readonly Patch[]): ThreadState | null {
  if (patches.length === 0) return base;
  if (base && !base.deleted && patches.every((patch) => patch.op === "add" || patch.op === "update")) {
    return continueInPlace(base, patches as readonly ArtifactPatch[]);
  }
  const first = patches[0] as Patch;
  // A Map keeps insertion order, which is creation order: updates replace in place.
  const byId = new Map<string, Artifact>();
  for (const artifact of base?.artifacts ?? []) byId.set(artifact.id, artifact);
  // Without a base, a replay starts at seq 1, or at a tombstone (a life whose past was swept).
  let seq = base?.seq ?? (first.op === "delete" ? first.seq - 1 : 0);
  const threadId = base?.threadId ?? first.threadId;
  let createdAt = base?.createdAt ?? first.at;
  let updatedAt = base?.updatedAt ?? first.at;
  let forkedFrom = base?.forkedFrom;
  let deleted = base?.deleted ?? false;
  let lifeStart = base?.lifeStart;
  for (const patch of patches) {
    // A delete may follow any earlier state: a reader standing in a deleted life goes
    // straight to the tombstone (the life's other commits are stubs by then).
    if (patch.seq !== seq + 1 && !(patch.op === "delete" && patch.seq > seq)) {
      throw new PatchGapError(seq + 1, patch.seq);
    }
    seq = patch.seq;
    updatedAt = patch.at;
    if (patch.op === "delete") {
      // The end of a life: nothing of it remains.
      byId.clear();
      forkedFrom = undefined;
      deleted = true;
      lifeStart = patch.seq;
      continue;
    }
    if (deleted) {
      // The first patch after a delete starts a new life.
      deleted = false;
      createdAt = patch.at;
    }
    if (patch.fork) forkedFrom = patch.fork;
    if (patch.op === "remove") byId.delete(patch.artifact.id);
    else byId.set(patch.artifact.id, patch.artifact);
  }
  const artifacts = [...byId.values()];
  return stateOf({ threadId, createdAt, updatedAt, seq, artifacts, forkedFrom, deleted, lifeStart }, base, patches);
}

/** The state from its parts: optional fields only where set, and the recent keys after `patches`. */
function stateOf(
  parts: Omit<ThreadState, "recentKeys" | "deleted"> & { deleted?: boolean },
  base: ThreadState | null,
  patches: readonly Patch[],
): ThreadState {
  const { threadId, createdAt, updatedAt, seq, artifacts, forkedFrom, deleted, lifeStart } = parts;
  const recentKeys = recordKeys(base?.recentKeys ?? [], patches);
  return {
    threadId,
    createdAt,
    updatedAt,
    seq,
    artifacts,
    ...(forkedFrom ? { forkedFrom } : {}),
    ...(deleted ? { deleted: true as const } : {}),
    ...(lifeStart !== undefined ? { lifeStart } : {}),
    ...(recentKeys.length > 0 ? { recentKeys } : {}),
  };
}

/** materialize for a live base and adds and updates only: positions do not move (see `positions`). */
function continueInPlace(base: ThreadState, patches: readonly ArtifactPatch[]): ThreadState {
  const index = positionsOf(base.artifacts);
  const artifacts = base.artifacts.slice();
  let seq = base.seq;
  let updatedAt = base.updatedAt;
  let forkedFrom = base.forkedFrom;
  for (const patch of patches) {
    if (patch.seq !== seq + 1) throw new PatchGapError(seq + 1, patch.seq);
    seq = patch.seq;
    updatedAt = patch.at;
    if (patch.fork) forkedFrom = patch.fork;
    const at = positionIn(artifacts, index, patch.artifact.id);
    if (at >= 0) artifacts[at] = patch.artifact;
    else {
      index.set(patch.artifact.id, artifacts.length);
      artifacts.push(patch.artifact);
    }
  }
  positions.set(artifacts, index);
  const { threadId, createdAt, lifeStart } = base;
  return stateOf({ threadId, createdAt, updatedAt, seq, artifacts, forkedFrom, lifeStart }, base, patches);
}
