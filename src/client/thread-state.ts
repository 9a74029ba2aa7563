/**
 * The client's one implementation of "apply events to a thread" (DESIGN.md "The client"):
 * a thread as the server confirmed it (a read, advanced by stream events), and the view a
 * user sees, that state with the writes not yet confirmed replayed on top. Pure: no I/O,
 * no clock, no randomness; every function returns new values and modifies none.
 */
import type { Artifact, ForkRef, ThreadView } from "../model/artifact.ts";
import { jsonEqual, type JsonValue } from "../model/json.ts";
import { mergePatch } from "../model/merge-patch.ts";
import type { ArtifactEvent, ThreadDeletedEvent } from "../model/patch.ts";

/** A thread as the server has it at `seq`. */
export interface ConfirmedThread {
  readonly threadId: string;
  /** The seq of the last patch applied: the read's `rolloutSeq`, then each event's. */
  readonly seq: number;
  /** `""` while the thread has no life the client knows of (never created, or deleted). */
  readonly createdAt: string;
  /**
   * The read's, then the last `add` or `update` event's artifact's (a `remove` event
   * carries no time, so it leaves this as it was); `""` like `createdAt`.
   */
  readonly updatedAt: string;
  readonly forkedFrom?: ForkRef;
  /** In creation order, as read-thread answers them. */
  readonly artifacts: readonly Artifact[];
  /** The last patch was the thread's delete (at `seq`): its next patch starts a new life. */
  readonly deleted: boolean;
}

/** The thread before anything was read, or as a `404 thread_not_found` leaves it: nothing, at seq 0. */
export function emptyThread(threadId: string): ConfirmedThread {
  return { threadId, seq: 0, createdAt: "", updatedAt: "", artifacts: [], deleted: false };
}

/** A read-thread answer as a confirmed state. */
export function fromView(view: ThreadView): ConfirmedThread {
  return {
    threadId: view.id,
    seq: view.rolloutSeq,
    createdAt: view.createdAt,
    updatedAt: view.updatedAt,
    ...(view.forkedFrom ? { forkedFrom: view.forkedFrom } : {}),
    artifacts: view.artifacts,
    deleted: false,
  };
}

/**
 * What an event does to a confirmed state:
 * - `applied`: the new state;
 * - `duplicate`: its seq is not after the state's (already applied): nothing to do;
 * - `gap`: it is not the next seq, so events were missed: the state cannot be advanced
 *   from it, the thread must be read again. A delete may follow any earlier seq (the life
 *   before it is gone as a whole), exactly as the server replays its own log.
 */
export type ApplyResult =
  | { kind: "applied"; state: ConfirmedThread }
  | { kind: "duplicate" }
  | { kind: "gap"; expected: number; got: number };

export function applyEvent(state: ConfirmedThread, event: ArtifactEvent | ThreadDeletedEvent): ApplyResult {
  if (event.seq <= state.seq) return { kind: "duplicate" };
  if (!("op" in event)) {
    const { forkedFrom: _, ...rest } = state;
    return {
      kind: "applied",
      state: { ...rest, seq: event.seq, createdAt: "", updatedAt: "", artifacts: [], deleted: true },
    };
  }
  if (event.seq !== state.seq + 1) return { kind: "gap", expected: state.seq + 1, got: event.seq };
  const { artifact } = event;
  // The first patch after a delete (or of a thread never seen) starts a life.
  const base = state.deleted || state.createdAt === ""
    ? { ...withoutFork(state), createdAt: artifact.createdAt, deleted: false }
    : state;
  let artifacts: readonly Artifact[];
  if (event.op === "remove") {
    artifacts = base.artifacts.filter((a) => a.id !== artifact.id);
  } else {
    const at = base.artifacts.findIndex((a) => a.id === artifact.id);
    // Updates keep the artifact's place (creation order); an add appends.
    const next = [...base.artifacts];
    next[at === -1 ? next.length : at] = artifact;
    artifacts = next;
  }
  return {
    kind: "applied",
    state: {
      ...base,
      seq: event.seq,
      updatedAt: event.op === "remove" ? base.updatedAt : artifact.updatedAt,
      artifacts,
    },
  };
}

function withoutFork(state: ConfirmedThread): ConfirmedThread {
  const { forkedFrom: _, ...rest } = state;
  return rest;
}

/** A write the user asked for, as the view replays it. Ids may be pending ids (of creates not yet answered). */
export type Write =
  | {
    op: "create";
    /** The pending id it shows under until the server names it. */
    artifactId: string;
    artifactType: string;
    identityKey: string | null;
    payload: JsonValue;
    /** When it was asked for: the pending artifact's createdAt and updatedAt. */
    at: string;
  }
  | { op: "update"; artifactId: string; payload: JsonValue }
  | { op: "merge"; artifactId: string; patch: JsonValue }
  | { op: "remove"; artifactId: string };

/** The server's answer to a write: the seq of its patch, and what it left. */
export type WriteAnswer =
  | { seq: number; artifact: Artifact }
  | { seq: number; removedId: string };

/** A write not yet confirmed by the state: not answered, or answered ahead of the stream. */
export interface PendingWrite {
  readonly write: Write;
  /**
   * A create the state already holds, seen before its answer (the stream was faster):
   * the id of the artifact it made, so the view shows that one alone.
   */
  readonly claimedId?: string;
  /** The answer, kept until the state reaches its seq (the stream was slower). */
  readonly answer?: WriteAnswer;
}

/** An artifact as the view shows it: `pending` while a write of it waits for the server's answer. */
export type LiveArtifact = Artifact & { readonly pending?: true };

/**
 * The view: `state` with `writes` replayed on top, in order. Each write, by where it is:
 * - answered, the state not yet at its seq: the answer's artifact (not pending), or its removal;
 * - a create the state already holds (`claimedId`): that artifact as it is;
 * - otherwise its optimistic effect, marked `pending`: a create appends an artifact under
 *   its pending id (or, when an artifact of its type and identity key exists, shows that
 *   one with the new payload: the server will answer with it, or refuse); an update
 *   replaces the payload, a merge merges into it (RFC 7396), a remove hides the artifact.
 *   Versions and seqs stay the confirmed ones until the answer; a write whose artifact is
 *   not in the view changes nothing (the server will refuse it).
 * `aliases` maps the pending ids of answered creates to the server's ids. Artifacts no
 * write touched are the state's own objects, so a row that did not change stays `===`.
 */
export function optimisticArtifacts(
  state: ConfirmedThread,
  writes: readonly PendingWrite[],
  aliases: ReadonlyMap<string, string>,
): LiveArtifact[] {
  if (writes.length === 0) return state.artifacts as LiveArtifact[];
  const view = new Map<string, LiveArtifact>(state.artifacts.map((a) => [a.id, a]));
  const local = new Map<string, string>();
  const resolve = (id: string) => aliases.get(id) ?? local.get(id) ?? id;
  for (const { write, claimedId, answer } of writes) {
    if (answer) {
      if ("artifact" in answer) view.set(answer.artifact.id, answer.artifact);
      else view.delete(answer.removedId);
      continue;
    }
    switch (write.op) {
      case "create": {
        if (claimedId !== undefined && view.has(claimedId)) {
          local.set(write.artifactId, claimedId);
          break;
        }
        // Another artifact of the same identity (a pending create's too): the server answers with that one.
        const same = write.identityKey === null
          ? undefined
          : [...view.values()].find((a) =>
            a.artifactType === write.artifactType && a.identityKey === write.identityKey
          );
        if (same) {
          local.set(write.artifactId, same.id);
          view.set(same.id, { ...same, payload: write.payload, pending: true });
          break;
        }
        view.set(write.artifactId, {
          id: write.artifactId,
          threadId: state.threadId,
          artifactType: write.artifactType,
          identityKey: write.identityKey,
          payload: write.payload,
          version: 1,
          createdAt: write.at,
          updatedAt: write.at,
          seq: 0,
          pending: true,
        });
        break;
      }
      case "update":
      case "merge": {
        const id = resolve(write.artifactId);
        const current = view.get(id);
        if (!current) break;
        const payload = write.op === "update" ? write.payload : mergePatch(current.payload, write.patch);
        view.set(id, { ...current, payload, pending: true });
        break;
      }
      case "remove":
        view.delete(resolve(write.artifactId));
        break;
    }
  }
  return [...view.values()];
}

/** The writes still to show: answered ones the state has reached are done. */
export function unsettled<W extends PendingWrite>(state: ConfirmedThread, writes: W[]): W[] {
  const kept = writes.filter((w) => !w.answer || w.answer.seq > state.seq);
  return kept.length === writes.length ? writes : kept;
}

/**
 * The artifact of `state` a create sent but not yet answered made, if the stream already
 * brought it: one the state did not hold when the create went out (`known`), of the same
 * type, identity key and payload, and not the artifact of another write (`taken`). A
 * guess only in the rare case of another writer creating an equal artifact meanwhile;
 * the answer then names the right one.
 */
export function findCreated(
  state: ConfirmedThread,
  write: Extract<Write, { op: "create" }>,
  known: ReadonlySet<string>,
  taken: ReadonlySet<string>,
): string | undefined {
  return state.artifacts.find((a) =>
    !known.has(a.id) && !taken.has(a.id) && a.artifactType === write.artifactType &&
    a.identityKey === write.identityKey && jsonEqual(a.payload, write.payload)
  )?.id;
}

/** A thread view of `state` whose artifacts are `artifacts` (the optimistic ones). */
export function threadViewOf(
  state: ConfirmedThread,
  artifacts: LiveArtifact[],
): Omit<ThreadView, "artifacts"> & { artifacts: LiveArtifact[] } {
  return {
    id: state.threadId,
    createdAt: state.createdAt,
    updatedAt: state.updatedAt,
    rolloutSeq: state.seq,
    artifacts,
    ...(state.forkedFrom ? { forkedFrom: state.forkedFrom } : {}),
  };
}
