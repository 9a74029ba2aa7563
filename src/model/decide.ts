import type { Artifact } from "./artifact.ts";
import { ProblemError } from "./errors.ts";
import { type JsonValue, jsonEqual } from "./json.ts";
import type { PatchOp } from "./patch.ts";

/** `If-Match` parsed: absent, `*`, or a set of acceptable versions. */
export type VersionPrecondition = { kind: "any" } | { kind: "exists" } | { kind: "versions"; versions: number[] };

export type WriteCommand =
  | { kind: "create"; artifactType: string; identityKey: string | null; payload: JsonValue }
  | { kind: "update"; artifactId: string; payload: JsonValue; precondition: VersionPrecondition }
  | { kind: "remove"; artifactId: string; precondition: VersionPrecondition };

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
  | { kind: "append"; op: PatchOp; artifact: Artifact }
  /** An idempotent create retry: nothing to append. */
  | { kind: "existing"; artifact: Artifact };

export interface DecideOptions {
  threadId: string;
  at: string;
  newId: () => string;
  maxArtifactsPerThread: number;
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
        artifact: { ...current, payload: command.payload, version: current.version + 1, updatedAt: options.at, seq: nextSeq },
      };
    }
    case "remove": {
      const current = requireTarget(context, command.artifactId);
      checkPrecondition(current, command.precondition);
      // The event carries the last state before removal, as API.md says.
      return { kind: "append", op: "remove", artifact: current };
    }
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
