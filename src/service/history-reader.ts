import type { Artifact, ThreadState } from "../model/artifact.ts";
import { ProblemError } from "../model/errors.ts";
import type { ArtifactOp, ArtifactPatch } from "../model/patch.ts";
import { allPatches, stateAt } from "../rollout/history.ts";
import type { Rollout } from "../rollout/rollout.ts";

/** One version of an artifact: the patch that made it. */
export interface ArtifactVersion {
  version: number;
  seq: number;
  op: ArtifactOp;
  at: string;
  artifact: Artifact;
}

export interface VersionPage {
  versions: ArtifactVersion[];
  /** The seq the next page starts after, or null on the last page. */
  next: number | null;
}

/**
 * A thread's past, read from the rollout alone: nothing here needs the cache (which holds
 * only the present) or, on Workers, the thread's sequencer (the past never changes, so
 * there is nothing to sequence).
 */
export class HistoryReader {
  readonly #rollout: Rollout;

  constructor(rollout: Rollout) {
    this.#rollout = rollout;
  }

  /** The thread right after `seq`; 404 thread_not_found when the rollout does not reach it. */
  async threadAt(tenant: string, threadId: string, seq: number): Promise<ThreadState> {
    const state = await stateAt(this.#rollout, tenant, threadId, seq);
    if (!state) throw new ProblemError("thread_not_found", `thread ${threadId} has no seq ${seq}`);
    return state;
  }

  /** Every version of one artifact, oldest first, after seq `afterSeq`, at most `limit`. */
  async versions(
    tenant: string,
    threadId: string,
    artifactId: string,
    page: { afterSeq: number; limit: number },
  ): Promise<VersionPage> {
    const patches = await allPatches(this.#rollout, tenant, threadId);
    // The current life's: a deleted thread has none (its tombstone is all that is left).
    const artifactPatches = patches.filter((patch): patch is ArtifactPatch => patch.op !== "delete");
    if (artifactPatches.length === 0) throw new ProblemError("thread_not_found", `no thread ${threadId}`);
    const mine = artifactPatches.filter((patch) => patch.artifact.id === artifactId);
    if (mine.length === 0) throw new ProblemError("artifact_not_found", `no artifact ${artifactId} in this thread`);
    const after = mine.filter((patch) => patch.seq > page.afterSeq);
    const shown = after.slice(0, page.limit);
    const last = shown[shown.length - 1];
    return {
      versions: shown.map((patch) => ({
        version: patch.artifact.version,
        seq: patch.seq,
        op: patch.op,
        at: patch.at,
        artifact: patch.artifact,
      })),
      next: after.length > page.limit && last ? last.seq : null,
    };
  }
}
