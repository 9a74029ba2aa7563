import type { Artifact, ThreadRef } from "./artifact.ts";
import type { GroupOutcome } from "./decide.ts";
import type { ProblemError } from "./errors.ts";
import type { ArtifactPatch, Patch } from "./patch.ts";

/** What a write of an artifact (or a fork) answers. */
export interface ArtifactWriteResult {
  /** 201 for a new artifact, 200 for an idempotent create or any update/remove. */
  created: boolean;
  artifact: Artifact;
  thread: ThreadRef;
  op: "add" | "update" | "remove" | "none";
}

/** What a thread's delete answers: the tombstone's seq. */
export interface ThreadDeleteResult {
  created: false;
  thread: ThreadRef;
  op: "delete";
}

export type WriteResult = ArtifactWriteResult | ThreadDeleteResult;

/** A write's answer: its result, or the problem that refused it. */
export type Answer = { ok: true; result: WriteResult } | { ok: false; problem: ProblemError };

/**
 * The answer to one write of a group, from its outcome (see `decideGroup`), once what the
 * group appended is durable. Pure: the writer settles each write with it.
 */
export function answerOf(outcome: Exclude<GroupOutcome, { kind: "replay" }>, threadId: string): Answer {
  switch (outcome.kind) {
    case "append": {
      const { patch } = outcome;
      return {
        ok: true,
        result: {
          created: patch.op === "add",
          artifact: patch.artifact,
          thread: { id: threadId, rolloutSeq: patch.seq },
          op: patch.op,
        },
      };
    }
    case "existing":
      return {
        ok: true,
        result: {
          created: false,
          artifact: outcome.artifact,
          thread: { id: threadId, rolloutSeq: outcome.seq },
          op: "none",
        },
      };
    case "fork": {
      const last = outcome.patches[outcome.patches.length - 1] as ArtifactPatch;
      return {
        ok: true,
        result: { created: true, artifact: last.artifact, thread: { id: threadId, rolloutSeq: last.seq }, op: "add" },
      };
    }
    case "deleted":
      return {
        ok: true,
        result: { created: false, thread: { id: threadId, rolloutSeq: outcome.patch.seq }, op: "delete" },
      };
    case "refused":
      return { ok: false, problem: outcome.problem };
  }
}

/**
 * A keyed write's repeat: what the write whose patch is `patch` answered (a fork's
 * answer names its last patch, which carries the key, like a plain add).
 */
export function replayAnswer(patch: Patch, threadId: string): Answer {
  return answerOf(patch.op === "delete" ? { kind: "deleted", patch } : { kind: "append", patch }, threadId);
}

/** What the group's outcomes append, in order. */
export function patchesToAppend(outcomes: readonly GroupOutcome[]): Patch[] {
  return outcomes.flatMap((outcome): Patch[] =>
    outcome.kind === "append" || outcome.kind === "deleted"
      ? [outcome.patch]
      : outcome.kind === "fork"
      ? outcome.patches
      : []
  );
}

/** The artifact count after committed patches, from `count` before them (a delete empties the thread). */
export function countAfter(count: number, patches: readonly Patch[]): number {
  let after = count;
  for (const patch of patches) {
    after = patch.op === "delete" ? 0 : after + (patch.op === "add" ? 1 : patch.op === "remove" ? -1 : 0);
  }
  return after;
}
