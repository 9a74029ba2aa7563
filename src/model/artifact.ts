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

/** The materialized state of one thread at `seq`; artifacts in creation order. */
export interface ThreadState {
  threadId: string;
  createdAt: string;
  updatedAt: string;
  seq: number;
  artifacts: Artifact[];
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
  artifacts: Artifact[];
}

export function toThreadView(state: ThreadState): ThreadView {
  return {
    id: state.threadId,
    createdAt: state.createdAt,
    updatedAt: state.updatedAt,
    rolloutSeq: state.seq,
    artifacts: state.artifacts,
  };
}
