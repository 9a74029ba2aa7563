import type { Artifact, ForkRef } from "./artifact.ts";
import type { IdempotencyMark } from "./idempotency.ts";

/** What a patch does to one artifact. */
export type ArtifactOp = "add" | "update" | "remove";
/** Every op a patch can have: an artifact's, or `delete`, which ends the thread's life. */
export type PatchOp = ArtifactOp | "delete";

/**
 * One change of one artifact at one seq. `artifact` is the full state after the op (for
 * `remove`, the last state before removal), so a replay needs nothing but the previous
 * state, and an event is the patch itself.
 */
export interface ArtifactPatch {
  seq: number;
  threadId: string;
  at: string;
  op: ArtifactOp;
  artifact: Artifact;
  /** Only on the first patch of a fork: where it came from (stored as the commit's `fork` marker). */
  fork?: ForkRef;
  /** The `Idempotency-Key` of the write that made it (a fork's: on its last patch). */
  idempotency?: IdempotencyMark;
}

/**
 * The end of a thread's life: every artifact before it is gone, and the next patch (if
 * any) starts a new life. Always alone in its commit, which stays as the tombstone.
 */
export interface DeletePatch {
  seq: number;
  threadId: string;
  at: string;
  op: "delete";
  /** The `Idempotency-Key` of the delete. */
  idempotency?: IdempotencyMark;
}

export type Patch = ArtifactPatch | DeletePatch;

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

/** One entry of a thread's event log: the SSE `id` (the seq), the one-line JSON `data`, and its SSE event name. */
export interface LogEvent {
  seq: number;
  data: string;
  /** Absent: `artifact-updated`. */
  event?: "thread-deleted";
}

/** The `data:` of an `artifact-updated` event. */
export interface ArtifactEvent {
  threadId: string;
  seq: number;
  op: ArtifactOp;
  artifact: Artifact;
}

/** The `data:` of a `thread-deleted` event. */
export interface ThreadDeletedEvent {
  threadId: string;
  seq: number;
}

export function toEvent(patch: ArtifactPatch): ArtifactEvent;
export function toEvent(patch: Patch): ArtifactEvent | ThreadDeletedEvent;
export function toEvent(patch: Patch): ArtifactEvent | ThreadDeletedEvent {
  if (patch.op === "delete") return { threadId: patch.threadId, seq: patch.seq };
  return { threadId: patch.threadId, seq: patch.seq, op: patch.op, artifact: patch.artifact };
}

/** The event's `data:` line: JSON.stringify never emits a raw newline, so no SSE field can be injected. */
export function eventData(patch: Patch): string {
  return JSON.stringify(toEvent(patch));
}

export function logEventOf(patch: Patch): LogEvent {
  const event: LogEvent = { seq: patch.seq, data: eventData(patch) };
  if (patch.op === "delete") event.event = "thread-deleted";
  return event;
}

/** Whether the commit ends a life (its one patch is a delete). */
export function isTombstone(commit: Commit): boolean {
  return commit.patches[0]?.op === "delete";
}
