import type { Artifact, ForkRef } from "./artifact.ts";
import { ProblemError } from "./errors.ts";
import type { IdempotencyMark, IdempotencyRecord } from "./idempotency.ts";
import { jsonEqual, type JsonValue, utf8Bytes } from "./json.ts";
import { mergePatch } from "./merge-patch.ts";
import type { ArtifactOp, ArtifactPatch, DeletePatch } from "./patch.ts";

/** `If-Match` parsed: absent, `*`, or a set of acceptable versions. */
export type VersionPrecondition = { kind: "any" } | { kind: "exists" } | { kind: "versions"; versions: number[] };

/**
 * A write, decided in its thread's group. `idempotency`: its `Idempotency-Key` (a repeat
 * of a write that changed the thread answers as that write did, and appends nothing).
 */
export type WriteCommand = WriteCommandOf & { idempotency?: IdempotencyMark };

type WriteCommandOf =
  | { kind: "create"; artifactType: string; identityKey: string | null; payload: JsonValue }
  | { kind: "update"; artifactId: string; payload: JsonValue; precondition: VersionPrecondition }
  /**
   * An RFC 7396 merge patch of the payload, applied to the payload the artifact has when
   * the write is decided (inside its group), so concurrent merges of one artifact each
   * apply on top of the one before: none is lost.
   */
  | { kind: "merge"; artifactId: string; patch: JsonValue; precondition: VersionPrecondition }
  | { kind: "remove"; artifactId: string; precondition: VersionPrecondition }
  /**
   * A fork's first commit: the source's artifacts at `from.seq`, added one seq each to a
   * thread that must have no commit yet (else 409 thread_exists).
   */
  | { kind: "fork"; from: ForkRef; artifacts: readonly Artifact[] }
  /**
   * Ends the thread's life with a delete at the next seq (`If-Match: "<rolloutSeq>"`: the
   * versions of `precondition` are rolloutSeqs): everything before it is gone, and the
   * next write starts a new life.
   */
  | { kind: "deleteThread"; precondition: VersionPrecondition };

/** Which artifact a write decision needs: by identity (create) or by id (update/remove). */
export type TargetLookup =
  | { by: "identity"; artifactType: string; identityKey: string | null }
  | { by: "id"; artifactId: string };

export function targetOf(command: WriteCommand): TargetLookup {
  switch (command.kind) {
    case "create":
      return { by: "identity", artifactType: command.artifactType, identityKey: command.identityKey };
    case "fork":
    case "deleteThread":
      // Decided on the seq alone: nothing to look up.
      return { by: "identity", artifactType: "", identityKey: null };
    default:
      return { by: "id", artifactId: command.artifactId };
  }
}

/**
 * What a write needs to know about the thread at one exact seq. `target` is the
 * artifact with the command's identity (create) or id (update/remove), or null.
 */
export interface WriteContext {
  seq: number;
  artifactCount: number;
  target: Artifact | null;
}

export type WriteDecision =
  | { kind: "append"; op: ArtifactOp; artifact: Artifact }
  /** An idempotent create retry: nothing to append. */
  | { kind: "existing"; artifact: Artifact };

export interface DecideOptions {
  threadId: string;
  at: string;
  newId: () => string;
  maxArtifactsPerThread: number;
  /** The bound a merged payload is checked against (a plain payload was checked on the way in). */
  maxPayloadBytes: number;
}

/**
 * The whole write policy, pure: given the thread at `context.seq`, what patch
 * `seq + 1` should be, or which problem the client gets. Throws ProblemError.
 */
export function decideWrite(command: WriteCommand, context: WriteContext, options: DecideOptions): WriteDecision {
  const nextSeq = context.seq + 1;
  switch (command.kind) {
    case "create": {
      const existing = command.identityKey === null ? null : context.target;
      if (existing) {
        if (jsonEqual(existing.payload, command.payload)) return { kind: "existing", artifact: existing };
        throw new ProblemError(
          "identity_conflict",
          `an artifact with this artifactType and identityKey exists (${existing.id}) with a different payload`,
        );
      }
      if (context.artifactCount >= options.maxArtifactsPerThread) {
        throw new ProblemError("thread_full", `the thread already has ${options.maxArtifactsPerThread} artifacts`);
      }
      return {
        kind: "append",
        op: "add",
        artifact: {
          id: options.newId(),
          threadId: options.threadId,
          artifactType: command.artifactType,
          identityKey: command.identityKey,
          payload: command.payload,
          version: 1,
          createdAt: options.at,
          updatedAt: options.at,
          seq: nextSeq,
        },
      };
    }
    case "update": {
      const current = requireTarget(context, command.artifactId);
      checkPrecondition(current, command.precondition);
      return {
        kind: "append",
        op: "update",
        artifact: {
          ...current,
          payload: command.payload,
          version: current.version + 1,
          updatedAt: options.at,
          seq: nextSeq,
        },
      };
    }
    case "merge": {
      const current = requireTarget(context, command.artifactId);
      checkPrecondition(current, command.precondition);
      const payload = mergePatch(current.payload, command.patch);
      if (utf8Bytes(JSON.stringify(payload)) > options.maxPayloadBytes) {
        throw new ProblemError(
          "payload_too_large",
          `the merged payload serializes to more than ${options.maxPayloadBytes} bytes`,
        );
      }
      return {
        kind: "append",
        op: "update",
        artifact: { ...current, payload, version: current.version + 1, updatedAt: options.at, seq: nextSeq },
      };
    }
    case "remove": {
      const current = requireTarget(context, command.artifactId);
      checkPrecondition(current, command.precondition);
      // The event carries the last state before removal, as API.md says.
      return { kind: "append", op: "remove", artifact: current };
    }
    case "fork":
    case "deleteThread":
      throw new RangeError(`${command.kind} is decided by decideGroup, on the thread's seq alone`);
  }
}

function requireTarget(context: WriteContext, artifactId: string): Artifact {
  if (!context.target) throw new ProblemError("artifact_not_found", `no artifact ${artifactId} in this thread`);
  return context.target;
}

function checkPrecondition(current: Artifact, precondition: VersionPrecondition): void {
  if (precondition.kind === "versions" && !precondition.versions.includes(current.version)) {
    throw new ProblemError(
      "version_conflict",
      `If-Match does not match: the artifact is at version ${current.version}`,
    );
  }
}

/**
 * What a group of writes to one thread needs at one exact seq: `targets[i]` is the
 * artifact `lookups[i]` names (see `TargetLookup`), or null.
 */
export interface GroupContext {
  seq: number;
  artifactCount: number;
  targets: (Artifact | null)[];
  /** The patch at `seq` deleted the thread (a tombstone): it has no artifacts and no life until the next write. */
  deleted?: boolean;
  /** `keys[i]`: the record of command i's Idempotency-Key in the thread's current life, or null (absent: none looked up). */
  keys?: (IdempotencyRecord | null)[];
}

/** One command's fate in a group, decided on the thread as the commands before it left it. */
export type GroupOutcome =
  | { kind: "append"; patch: ArtifactPatch }
  /** An idempotent create: nothing appended; `seq` is the thread's head when decided. */
  | { kind: "existing"; artifact: Artifact; seq: number }
  /** A fork: its patches, one per artifact, the first of a life; the first carries the fork marker. */
  | { kind: "fork"; patches: ArtifactPatch[] }
  /** The thread's delete (always alone in its group: see GroupWriter). */
  | { kind: "deleted"; patch: DeletePatch }
  /** A repeat of the keyed write whose patch is at `seq`: answered as that one was, nothing appended. */
  | { kind: "replay"; seq: number }
  | { kind: "refused"; problem: ProblemError };

/**
 * `decideWrite` for commands queued on one thread, in order: each is decided on the
 * thread after the patches the ones before it append, so the group can be committed
 * as consecutive seqs from `context.seq + 1`. An overlay of the artifacts the group
 * touched stands in for the state between them (identity and type never change on
 * update, so an identity resolves to an id once, then the id's latest state wins).
 */
export function decideGroup(
  commands: readonly WriteCommand[],
  context: GroupContext,
  options: DecideOptions,
): GroupOutcome[] {
  const byId = new Map<string, Artifact | null>();
  const byIdentity = new Map<string, Artifact>();
  let seq = context.seq;
  let artifactCount = context.artifactCount;
  // After a delete in this group, nothing of the context's artifacts is there any more.
  let wiped = false;
  let deleted = context.deleted ?? false;
  const live = () => seq > 0 && !deleted;
  // Keys recorded by this group's earlier writes (a delete ends the context's keys too).
  const keyed = new Map<string, { fingerprint: string; seq: number }>();
  return commands.map((command, index): GroupOutcome => {
    const mark = command.idempotency;
    if (mark) {
      const earlier = keyed.get(mark.key) ?? (wiped ? null : (context.keys?.[index] ?? null));
      if (earlier) {
        if (earlier.fingerprint === mark.fingerprint) return { kind: "replay", seq: earlier.seq };
        return {
          kind: "refused",
          problem: new ProblemError(
            "idempotency_key_reused",
            "this Idempotency-Key was used for another request (another route or body)",
          ),
        };
      }
    }
    const outcome = decideOne(command, index);
    if (outcome.kind === "deleted") keyed.clear();
    if (mark) {
      const marked = markOutcome(outcome, mark);
      if (marked) keyed.set(mark.key, { fingerprint: mark.fingerprint, seq: marked });
    }
    return outcome;
  });

  function decideOne(command: WriteCommand, index: number): GroupOutcome {
    if (command.kind === "deleteThread") {
      if (!live()) {
        return { kind: "refused", problem: new ProblemError("thread_not_found", `no thread ${options.threadId}`) };
      }
      if (command.precondition.kind === "versions" && !command.precondition.versions.includes(seq)) {
        return {
          kind: "refused",
          problem: new ProblemError("version_conflict", `If-Match does not match: the thread is at seq ${seq}`),
        };
      }
      seq += 1;
      artifactCount = 0;
      byId.clear();
      byIdentity.clear();
      wiped = true;
      deleted = true;
      return { kind: "deleted", patch: { seq, threadId: options.threadId, at: options.at, op: "delete" } };
    }
    if (command.kind === "fork") {
      if (live()) {
        return { kind: "refused", problem: new ProblemError("thread_exists", `thread ${options.threadId} exists`) };
      }
      const start = seq;
      const patches = command.artifacts.map((source, i): ArtifactPatch => ({
        seq: start + i + 1,
        threadId: options.threadId,
        at: options.at,
        op: "add",
        artifact: { ...source, threadId: options.threadId, seq: start + i + 1 },
        ...(i === 0 ? { fork: command.from } : {}),
      }));
      if (patches.length === 0) {
        return {
          kind: "refused",
          problem: new ProblemError("invalid_request", "the source has no artifacts at that seq: nothing to fork"),
        };
      }
      seq = start + patches.length;
      artifactCount = patches.length;
      deleted = false;
      for (const patch of patches) {
        byId.set(patch.artifact.id, patch.artifact);
        if (patch.artifact.identityKey !== null) {
          byIdentity.set(identityOf(patch.artifact.artifactType, patch.artifact.identityKey), patch.artifact);
        }
      }
      return { kind: "fork", patches };
    }
    const base = wiped ? null : (context.targets[index] ?? null);
    let target: Artifact | null;
    if (command.kind === "create") {
      if (command.identityKey === null) target = null;
      else {
        const found = byIdentity.get(identityOf(command.artifactType, command.identityKey)) ?? base;
        target = found && byId.has(found.id) ? (byId.get(found.id) ?? null) : found;
      }
    } else {
      target = byId.has(command.artifactId) ? (byId.get(command.artifactId) ?? null) : base;
    }
    let decision: WriteDecision;
    try {
      if (command.kind !== "create" && !live()) {
        throw new ProblemError("thread_not_found", `no thread ${options.threadId}`);
      }
      decision = decideWrite(command, { seq, artifactCount, target }, options);
    } catch (error) {
      if (error instanceof ProblemError) return { kind: "refused", problem: error };
      throw error;
    }
    if (decision.kind === "existing") return { kind: "existing", artifact: decision.artifact, seq };
    seq += 1;
    deleted = false;
    const { artifact, op } = decision;
    if (op === "add") {
      artifactCount += 1;
      if (artifact.identityKey !== null) {
        byIdentity.set(identityOf(artifact.artifactType, artifact.identityKey), artifact);
      }
    }
    if (op === "remove") artifactCount -= 1;
    byId.set(artifact.id, op === "remove" ? null : artifact);
    return { kind: "append", patch: { seq, threadId: options.threadId, at: options.at, op, artifact } };
  }
}

/**
 * Puts a keyed write's mark on the patch it appends (a fork's: on its last, whose seq
 * its answer names); returns that seq, or null when the outcome appends nothing (a
 * refusal, or an idempotent create by identity: neither is remembered).
 */
function markOutcome(outcome: GroupOutcome, mark: IdempotencyMark): number | null {
  const idempotency = { key: mark.key, fingerprint: mark.fingerprint };
  switch (outcome.kind) {
    case "append":
    case "deleted":
      outcome.patch.idempotency = idempotency;
      return outcome.patch.seq;
    case "fork": {
      const last = outcome.patches[outcome.patches.length - 1] as ArtifactPatch;
      last.idempotency = idempotency;
      return last.seq;
    }
    default:
      return null;
  }
}

function identityOf(artifactType: string, identityKey: string): string {
  return `${artifactType}\u0000${identityKey}`;
}
