import type { Artifact, ForkRef } from "./artifact.ts";

export type PatchOp = "add" | "update" | "remove";

/**
 * One change of one artifact at one seq. `artifact` is the full state after the op (for
 * `remove`, the last state before removal), so a replay needs nothing but the previous
 * state, and an event is the patch itself.
 */
export interface Patch {
  seq: number;
  threadId: string;
  at: string;
  op: PatchOp;
  artifact: Artifact;
  /** Only on the first patch of a fork: where it came from (stored as the commit's `fork` marker). */
  fork?: ForkRef;
}

/**
 * Consecutive patches of one thread committed together (one write group): the unit the
 * rollout stores, one object per commit, and the unit the cache applies, atomically, so
 * the cache always stands at a commit boundary.
 */
export interface Commit {
  threadId: string;
  firstSeq: number;
  lastSeq: number;
  /** When the commit was made: its last patch's `at`. */
  at: string;
  patches: readonly Patch[];
}

/** The commit of `patches` (consecutive, of one thread, at least one). */
export function commitOf(patches: readonly Patch[]): Commit {
  const first = patches[0];
  const last = patches[patches.length - 1];
  if (!first || !last) throw new RangeError("a commit holds at least one patch");
  return { threadId: first.threadId, firstSeq: first.seq, lastSeq: last.seq, at: last.at, patches };
}

/** The patches of consecutive commits, in seq order. */
export function patchesOf(commits: readonly Commit[]): Patch[] {
  return commits.flatMap((commit) => commit.patches);
}

/** One entry of a thread's event log: the SSE `id` (the seq) and the one-line JSON `data`. */
export interface LogEvent {
  seq: number;
  data: string;
}

/** The `data:` of an `artifact-updated` event. */
export interface ArtifactEvent {
  threadId: string;
  seq: number;
  op: PatchOp;
  artifact: Artifact;
}

export function toEvent(patch: Patch): ArtifactEvent {
  return { threadId: patch.threadId, seq: patch.seq, op: patch.op, artifact: patch.artifact };
}

/** The event's `data:` line: JSON.stringify never emits a raw newline, so no SSE field can be injected. */
export function eventData(patch: Patch): string {
  return JSON.stringify(toEvent(patch));
}

export function logEventOf(patch: Patch): LogEvent {
  return { seq: patch.seq, data: eventData(patch) };
}
