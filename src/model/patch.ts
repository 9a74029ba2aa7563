import * as v from "valibot";
import type { Artifact, ThreadJson, ThreadState } from "./artifact.ts";
import { ArtifactSchema } from "./schemas.ts";

export type PatchOp = "add" | "update" | "remove";

/**
 * Patch format v1: one immutable rollout entry. `artifact` is the full state after
 * the op (for `remove`, the last state before removal), so replay needs no history
 * beyond the previous state and an event is the patch itself.
 */
export interface Patch {
  v: 1;
  seq: number;
  threadId: string;
  at: string;
  op: PatchOp;
  artifact: Artifact;
}

/** Snapshot format v1: the materialized thread at `seq`. */
export interface Snapshot extends ThreadState {
  v: 1;
}

const PatchSchema = v.strictObject({
  v: v.literal(1),
  seq: v.pipe(v.number(), v.integer(), v.minValue(1)),
  threadId: v.string(),
  at: v.string(),
  op: v.picklist(["add", "update", "remove"]),
  artifact: ArtifactSchema,
});

const SnapshotSchema = v.strictObject({
  v: v.literal(1),
  seq: v.pipe(v.number(), v.integer(), v.minValue(1)),
  threadId: v.string(),
  createdAt: v.string(),
  updatedAt: v.string(),
  artifacts: v.array(ArtifactSchema),
});

/** A stored object that does not parse is corruption, not client input. */
export class CorruptRolloutError extends Error {
  constructor(what: string, cause?: unknown) {
    super(`corrupt rollout object: ${what}`, { cause });
    this.name = "CorruptRolloutError";
  }
}

export function parsePatch(text: string, where: string): Patch {
  const result = v.safeParse(PatchSchema, safeJson(text, where));
  if (!result.success) throw new CorruptRolloutError(where);
  return result.output as Patch;
}

export function parseSnapshot(text: string, where: string): Snapshot {
  const result = v.safeParse(SnapshotSchema, safeJson(text, where));
  if (!result.success) throw new CorruptRolloutError(where);
  return result.output as Snapshot;
}

function safeJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CorruptRolloutError(where, error);
  }
}

export function serializePatch(patch: Patch): string {
  return JSON.stringify(patch);
}

export function toSnapshot(state: ThreadState): Snapshot {
  return { v: 1, ...state };
}

/** A snapshot's stored text, around the artifact texts as they are (no parse, no re-serialization). */
export function snapshotJson(thread: ThreadJson): string {
  const j = JSON.stringify;
  return `{"v":1,"threadId":${j(thread.threadId)},"createdAt":${j(thread.createdAt)},"updatedAt":${
    j(thread.updatedAt)
  },"seq":${j(thread.seq)},"artifacts":${thread.artifactsJson}}`;
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
