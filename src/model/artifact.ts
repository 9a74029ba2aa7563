import type { IdempotencyRecord } from "./idempotency.ts";
import type { JsonValue } from "./json.ts";

/** The public artifact shape of API.md. */
export interface Artifact {
  id: string;
  threadId: string;
  artifactType: string;
  identityKey: string | null;
  payload: JsonValue;
  /** Patches applied to this artifact: 1 after create. */
  version: number;
  createdAt: string;
  updatedAt: string;
  /** Rollout seq of the last patch that touched it. */
  seq: number;
}

/** Where a forked thread came from: the source thread and the seq it was forked at. */
export interface ForkRef {
  threadId: string;
  seq: number;
}

/** The materialized state of one thread at `seq`; artifacts in creation order (never changed in place: see materialize.ts). */
export interface ThreadState {
  threadId: string;
  createdAt: string;
  updatedAt: string;
  seq: number;
  artifacts: readonly Artifact[];
  /** Only on a fork (absent, not null, elsewhere). */
  forkedFrom?: ForkRef;
  /**
   * The thread's last patch deleted it: it has no artifacts and reads answer 404 as if
   * it never existed; `seq` is the tombstone's, and the next patch starts a new life.
   */
  deleted?: true;
  /** The seq the current life started at (its tombstone's); absent for a thread never deleted. */
  lifeStart?: number;
  /**
   * The `Idempotency-Key`s the current life's recent patches recorded, oldest first
   * (see model/idempotency.ts); absent when there are none. Never shown to clients.
   */
  recentKeys?: readonly IdempotencyRecord[];
}

/** The `thread` object of write responses. */
export interface ThreadRef {
  id: string;
  rolloutSeq: number;
}

/** The `thread` object of read-thread and list-threads. */
export interface ThreadView {
  id: string;
  createdAt: string;
  updatedAt: string;
  rolloutSeq: number;
  artifacts: readonly Artifact[];
  /** Only on a fork. */
  forkedFrom?: ForkRef;
}

export function toThreadView(state: ThreadState): ThreadView {
  return {
    id: state.threadId,
    createdAt: state.createdAt,
    updatedAt: state.updatedAt,
    rolloutSeq: state.seq,
    artifacts: state.artifacts,
    ...(state.forkedFrom ? { forkedFrom: state.forkedFrom } : {}),
  };
}

/**
 * A thread whose artifact list is still JSON text: the cache stores each artifact as
 * the JSON it serves, so a read joins the stored texts and answers without parsing
 * and re-serializing them. `artifactsJson` is a JSON array of `Artifact`s in creation order.
 */
export interface ThreadJson {
  threadId: string;
  createdAt: string;
  updatedAt: string;
  seq: number;
  artifactsJson: string;
  forkedFrom?: ForkRef;
  deleted?: true;
  lifeStart?: number;
  /** As on ThreadState; only where asked for (snapshots, resident loads), never served. */
  recentKeys?: readonly IdempotencyRecord[];
}

/** The thread as JSON text, without its keys (what reads serve and calls between processes carry). */
export function toThreadJson(state: ThreadState): ThreadJson {
  const { artifacts, recentKeys: _keys, ...head } = state;
  return { ...head, artifactsJson: JSON.stringify(artifacts) };
}

export function parseThreadJson(thread: ThreadJson): ThreadState {
  const { artifactsJson, ...head } = thread;
  return { ...head, artifacts: JSON.parse(artifactsJson) as Artifact[] };
}

/** The read-thread response body, `{"thread": ThreadView}`, around the stored artifact texts. */
export function threadViewJson(thread: ThreadJson): string {
  const j = JSON.stringify;
  const fork = thread.forkedFrom ? `,"forkedFrom":${j(thread.forkedFrom)}` : "";
  return `{"thread":{"id":${j(thread.threadId)},"createdAt":${j(thread.createdAt)},"updatedAt":${
    j(thread.updatedAt)
  },"rolloutSeq":${j(thread.seq)},"artifacts":${thread.artifactsJson}${fork}}}`;
}
