import type { Artifact, ThreadState } from "./artifact.ts";
import { recordKeys } from "./idempotency.ts";
import type { Patch } from "./patch.ts";

/** Patches handed to `materialize` must continue the state without a hole. */
export class PatchGapError extends Error {
  constructor(expected: number, got: number) {
    super(`patch gap: expected seq ${expected}, got ${got}`);
    this.name = "PatchGapError";
  }
}

/**
 * Applies `patches` (contiguous, starting at `base.seq + 1`, or at 1 without a base;
 * only a delete may come later, since it ends whatever came before) to `base`. Pure and deterministic: the same inputs always give an equal state, and
 * `base` is not modified.
 */
export function materialize(base: ThreadState | null, patches: readonly Patch[]): ThreadState | null {
  if (patches.length === 0) return base;
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
  const recentKeys = recordKeys(base?.recentKeys ?? [], patches);
  return {
    threadId,
    createdAt,
    updatedAt,
    seq,
    artifacts: [...byId.values()],
    ...(forkedFrom ? { forkedFrom } : {}),
    ...(deleted ? { deleted: true as const } : {}),
    ...(lifeStart !== undefined ? { lifeStart } : {}),
    ...(recentKeys.length > 0 ? { recentKeys } : {}),
  };
}
