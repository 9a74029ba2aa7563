/**
 * Rollout format 2 (API.md "Rollout layout, format 2"): what each object's JSON is, and
 * parsing that refuses anything else. A stored object that does not parse is corruption,
 * never client input.
 */
import * as v from "valibot";
import type { ThreadJson, ThreadState } from "../model/artifact.ts";
import { IDEMPOTENCY_KEY, type IdempotencyMark } from "../model/idempotency.ts";
import type { Commit, Patch } from "../model/patch.ts";
import { ArtifactSchema } from "../model/schemas.ts";

export const FORMAT = 2;

export class CorruptRolloutError extends Error {
  constructor(what: string, cause?: unknown) {
    super(`corrupt rollout object: ${what}`, { cause });
    this.name = "CorruptRolloutError";
  }
}

const Seq = v.pipe(v.number(), v.integer(), v.minValue(1));

const ForkSchema = v.strictObject({ threadId: v.string(), seq: Seq });

/** A keyed write's mark on its patch (see model/idempotency.ts). */
const MarkSchema = v.strictObject({ key: v.pipe(v.string(), v.regex(IDEMPOTENCY_KEY)), fingerprint: v.string() });

const StoredPatchSchema = v.union([
  v.strictObject({
    seq: Seq,
    op: v.picklist(["add", "update", "remove"]),
    at: v.string(),
    artifact: ArtifactSchema,
    // A fork's first patch inside a delta that does not start with it (a delta that starts
    // with a tombstone, the new life a fork): a commit marks its first patch at the top instead.
    fork: v.optional(ForkSchema),
    idempotency: v.optional(MarkSchema),
  }),
  // The end of a life: no artifact.
  v.strictObject({ seq: Seq, op: v.literal("delete"), at: v.string(), idempotency: v.optional(MarkSchema) }),
]);

/** A commit, and a compacted delta (the same shape: consecutive patches); a fork's first commit is marked `fork`. */
const CommitSchema = v.strictObject({
  v: v.literal(FORMAT),
  firstSeq: Seq,
  lastSeq: Seq,
  at: v.string(),
  fork: v.optional(ForkSchema),
  patches: v.pipe(v.array(StoredPatchSchema), v.minLength(1)),
});

const SnapshotSchema = v.strictObject({
  v: v.literal(FORMAT),
  threadId: v.string(),
  createdAt: v.string(),
  updatedAt: v.string(),
  seq: Seq,
  artifacts: v.array(ArtifactSchema),
  forkedFrom: v.optional(ForkSchema),
  // The keys recent patches recorded, oldest first: a cold load keeps honouring them.
  recentKeys: v.optional(v.array(v.strictObject({
    key: v.pipe(v.string(), v.regex(IDEMPOTENCY_KEY)),
    fingerprint: v.string(),
    seq: Seq,
    at: v.string(),
  }))),
});

const Bytes = v.pipe(v.number(), v.integer(), v.minValue(0));

const CompactionSchema = v.strictObject({
  v: v.literal(FORMAT),
  /** The life the pointer is of starts at this seq (a tombstone's); absent: at 1. */
  since: v.optional(Seq),
  seq: Seq,
  snapshot: v.nullable(v.strictObject({ seq: Seq, bytes: Bytes })),
  deltas: v.array(v.strictObject({ firstSeq: Seq, lastSeq: Seq, bytes: Bytes, churn: Bytes })),
});

/**
 * The compaction pointer (`compaction.json`, overwritten): where a cold read starts. The
 * snapshot (the thread at `snapshot.seq`) and the deltas after it, consecutive, up to
 * `seq`; the commits after `seq` are the tail. Only a hint: a missing or stale pointer
 * makes a cold read list more commits, never read wrong ones.
 */
export interface CompactionPointer {
  /** The first seq of the life this pointer compacts (a tombstone's seq; absent: 1). */
  lifeStart?: number;
  seq: number;
  snapshot: { seq: number; bytes: number } | null;
  /** `bytes` of each delta, of which about `churn` are updates and removes (what can make a snapshot pay off). */
  deltas: DeltaRef[];
}

export interface DeltaRef {
  firstSeq: number;
  lastSeq: number;
  bytes: number;
  churn: number;
}

/** Only the mark's own members (a record passed as a mark carries more). */
function markOf(mark: IdempotencyMark): IdempotencyMark {
  return { key: mark.key, fingerprint: mark.fingerprint };
}

/** `{"v":2,"firstSeq":n,"lastSeq":m,"at":..,"patches":[{"seq","op","at","artifact"}, ...]}` */
export function serializeCommit(commit: Commit): string {
  // The first patch's fork marker goes on the commit; one past the first (only in a delta
  // that starts with a tombstone and goes on into a fork's new life) stays on its patch.
  const patches = commit.patches.map((p, i) =>
    p.op === "delete"
      ? { seq: p.seq, op: p.op, at: p.at, ...(p.idempotency ? { idempotency: markOf(p.idempotency) } : {}) }
      : {
        seq: p.seq,
        op: p.op,
        at: p.at,
        artifact: p.artifact,
        ...(i > 0 && p.fork ? { fork: p.fork } : {}),
        ...(p.idempotency ? { idempotency: markOf(p.idempotency) } : {}),
      }
  );
  const first = commit.patches[0];
  const fork = first && first.op !== "delete" ? first.fork : undefined;
  return JSON.stringify({
    v: FORMAT,
    firstSeq: commit.firstSeq,
    lastSeq: commit.lastSeq,
    at: commit.at,
    ...(fork ? { fork } : {}),
    patches,
  });
}

/** A commit (or delta) of `threadId` as stored at `where`; its patches must be consecutive, its bounds true. */
export function parseCommit(text: string, where: string, threadId: string): Commit {
  const result = v.safeParse(CommitSchema, safeJson(text, where));
  if (!result.success) throw new CorruptRolloutError(where);
  const { firstSeq, lastSeq, at, patches, fork } = result.output;
  const consecutive = patches.every((p, i) =>
    p.seq === firstSeq + i && (p.op === "delete" || p.artifact.threadId === threadId)
  );
  if (!consecutive || lastSeq !== firstSeq + patches.length - 1) throw new CorruptRolloutError(where);
  // A delete starts its commit (alone in it: the tombstone) or its delta (which then holds
  // the new life after it): nothing before it in the same object. A fork's marker sits on an artifact patch.
  if (patches.some((p, i) => p.op === "delete" && i > 0) || (fork && patches[0]?.op === "delete")) {
    throw new CorruptRolloutError(where);
  }
  const parsed = patches.map((p, i) => ({ threadId, ...p, ...(fork && i === 0 ? { fork } : {}) }) as Patch);
  return { threadId, firstSeq, lastSeq, at, patches: parsed };
}

/**
 * What a deleted life leaves at each of its commit keys: the key stays occupied (so no
 * writer deciding on an old head can put a commit there and be told it succeeded) while
 * the content is gone. It covers seqs `firstSeq..lastSeq` of lives that ended at or
 * before the delete commit at `tombstone` (which may itself be a stub of a later delete:
 * follow it). Stubs go only after the retention period (see service/thread-sweeper.ts).
 */
export interface CommitStub {
  firstSeq: number;
  lastSeq: number;
  tombstone: number;
}

const StubSchema = v.strictObject({ v: v.literal(FORMAT), firstSeq: Seq, lastSeq: Seq, tombstone: Seq });

/** `{"v":2,"firstSeq":k,"lastSeq":m,"tombstone":T}`: no user data at all. */
export function serializeStub(stub: CommitStub): string {
  return JSON.stringify({ v: FORMAT, firstSeq: stub.firstSeq, lastSeq: stub.lastSeq, tombstone: stub.tombstone });
}

export function isStub(stored: Commit | CommitStub): stored is CommitStub {
  return "tombstone" in stored;
}

/** Whether stored text is a stub (without judging anything else it may be). */
export function isStubText(text: string): boolean {
  try {
    const json: unknown = JSON.parse(text);
    return json !== null && typeof json === "object" && "tombstone" in json;
  } catch {
    return false;
  }
}

/** What a commit key holds: a commit, or the stub a delete left in its place. */
export function parseCommitObject(text: string, where: string, threadId: string): Commit | CommitStub {
  const json = safeJson(text, where);
  if (json !== null && typeof json === "object" && "tombstone" in json) {
    const result = v.safeParse(StubSchema, json);
    if (!result.success) throw new CorruptRolloutError(where);
    const { firstSeq, lastSeq, tombstone } = result.output;
    if (lastSeq < firstSeq || tombstone <= lastSeq) throw new CorruptRolloutError(where);
    return { firstSeq, lastSeq, tombstone };
  }
  return parseCommit(text, where, threadId);
}

/** A snapshot's stored text, around the artifact texts as they are (no parse, no re-serialization). */
export function snapshotJson(thread: ThreadJson): string {
  const j = JSON.stringify;
  const fork = thread.forkedFrom ? `,"forkedFrom":${j(thread.forkedFrom)}` : "";
  const keys = thread.recentKeys && thread.recentKeys.length > 0 ? `,"recentKeys":${j(thread.recentKeys)}` : "";
  return `{"v":${FORMAT},"threadId":${j(thread.threadId)},"createdAt":${j(thread.createdAt)},"updatedAt":${
    j(thread.updatedAt)
  },"seq":${j(thread.seq)},"artifacts":${thread.artifactsJson}${fork}${keys}}`;
}

export function parseSnapshot(text: string, where: string): ThreadState {
  const result = v.safeParse(SnapshotSchema, safeJson(text, where));
  if (!result.success) throw new CorruptRolloutError(where);
  const { v: _format, ...state } = result.output;
  return state as ThreadState;
}

// Stored, a life's start is `since` (life.json and compaction.json keep their released
// field names); in code it is `lifeStart`, since `since` is the SSE resume point.

export function serializeCompaction(pointer: CompactionPointer): string {
  const { lifeStart, ...rest } = pointer;
  return JSON.stringify({ v: FORMAT, ...(lifeStart === undefined ? {} : { since: lifeStart }), ...rest });
}

export function parseCompaction(text: string, where: string): CompactionPointer {
  const result = v.safeParse(CompactionSchema, safeJson(text, where));
  if (!result.success) throw new CorruptRolloutError(where);
  const { v: _format, since, ...rest } = result.output;
  const pointer: CompactionPointer = { ...(since === undefined ? {} : { lifeStart: since }), ...rest };
  // The chain must be what it says: deltas consecutive after the snapshot (or the life's start), up to seq.
  let at = pointer.snapshot?.seq ?? (pointer.lifeStart ?? 1) - 1;
  for (const delta of pointer.deltas) {
    if (delta.firstSeq !== at + 1 || delta.lastSeq < delta.firstSeq) throw new CorruptRolloutError(where);
    at = delta.lastSeq;
  }
  if (at !== pointer.seq) throw new CorruptRolloutError(where);
  return pointer;
}

/**
 * `life.json`: the seq the thread's current life starts at (its latest tombstone), when
 * that delete was made, and how far the sweep of the earlier lives has gone: `content`
 * once their commits are stubs and their compaction objects gone, `keys` once the
 * stubs (but the first) are removed too, after the retention period.
 */
export interface LifeMarker {
  lifeStart: number;
  /** The tombstone's `at` (absent in markers written before it was recorded: the sweep adds it). */
  deletedAt?: string;
  swept?: "content" | "keys";
  /** Every commit key below this seq is a stub already (an earlier delete's sweep): a sweep need not rewrite them. */
  sweptBelow?: number;
}

const LifeSchema = v.strictObject({
  v: v.literal(FORMAT),
  since: Seq,
  deletedAt: v.optional(v.string()),
  swept: v.optional(v.picklist(["content", "keys"])),
  sweptBelow: v.optional(Seq),
});

export function serializeLife(life: LifeMarker): string {
  const { lifeStart, ...rest } = life;
  return JSON.stringify({ v: FORMAT, since: lifeStart, ...rest });
}

export function parseLife(text: string, where: string): LifeMarker {
  const result = v.safeParse(LifeSchema, safeJson(text, where));
  if (!result.success) throw new CorruptRolloutError(where);
  const { since, deletedAt, swept, sweptBelow } = result.output;
  return {
    lifeStart: since,
    ...(deletedAt ? { deletedAt } : {}),
    ...(swept ? { swept } : {}),
    ...(sweptBelow ? { sweptBelow } : {}),
  };
}

function safeJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CorruptRolloutError(where, error);
  }
}
