/** Rollout keys, exactly as API.md lays them out. Tenant and threadId are validated upstream. */

const SEQ_DIGITS = 12;

/** Every key of the rollout starts with this. */
export const TENANTS_PREFIX = "tenants/";

export function tenantPrefix(tenant: string): string {
  return `${TENANTS_PREFIX}${tenant}/`;
}

export function threadsPrefix(tenant: string): string {
  return `${tenantPrefix(tenant)}threads/`;
}

export function threadPrefix(tenant: string, threadId: string): string {
  return `${threadsPrefix(tenant)}${threadId}/`;
}

/**
 * The first name of the next folder after `name` under `prefix`: every key below
 * `<prefix><name>/` sorts before it ("0" is the code unit right after "/", in UTF-16
 * and in UTF-8 alike), and every key of a later sibling sorts after it. Listing with
 * it as `startAfter` skips the whole folder in one call.
 */
export function afterFolder(prefix: string, name: string): string {
  return `${prefix}${name}0`;
}

export function commitsPrefix(tenant: string, threadId: string): string {
  return `${threadPrefix(tenant, threadId)}commits/`;
}

/** The commit whose first patch is `firstSeq`: the commit after seq `s` is always at `commitKey(s + 1)`. */
export function commitKey(tenant: string, threadId: string, firstSeq: number): string {
  return `${commitsPrefix(tenant, threadId)}${padSeq(firstSeq)}.json`;
}

/** The seq a commit key starts at, or null for a key that is not one. */
export function firstSeqOfCommitKey(key: string): number | null {
  const match = /\/commits\/(\d{12})\.json$/.exec(key);
  return match ? Number(match[1]) : null;
}

export function snapshotsPrefix(tenant: string, threadId: string): string {
  return `${threadPrefix(tenant, threadId)}snapshots/`;
}

export function snapshotKey(tenant: string, threadId: string, seq: number): string {
  return `${snapshotsPrefix(tenant, threadId)}${padSeq(seq)}.json`;
}

/** The seq a snapshot key is at, or null for a key that is not one. */
export function seqOfSnapshotKey(key: string): number | null {
  const match = /\/snapshots\/(\d{12})\.json$/.exec(key);
  return match ? Number(match[1]) : null;
}

export function deltasPrefix(tenant: string, threadId: string): string {
  return `${threadPrefix(tenant, threadId)}deltas/`;
}

/** A compacted delta: the patches `firstSeq..lastSeq`, which span whole commits. */
export function deltaKey(tenant: string, threadId: string, firstSeq: number, lastSeq: number): string {
  return `${deltasPrefix(tenant, threadId)}${padSeq(firstSeq)}-${padSeq(lastSeq)}.json`;
}

/** The bounds of a delta key, or null for a key that is not one. */
export function rangeOfDeltaKey(key: string): { firstSeq: number; lastSeq: number } | null {
  const match = /\/deltas\/(\d{12})-(\d{12})\.json$/.exec(key);
  return match ? { firstSeq: Number(match[1]), lastSeq: Number(match[2]) } : null;
}

/**
 * The life marker: where the thread's current life starts (its latest tombstone), once
 * a delete has been swept; readers start there, whatever is left below it.
 */
export function lifeKey(tenant: string, threadId: string): string {
  return `${threadPrefix(tenant, threadId)}life.json`;
}

/** The compaction pointer: where a cold read of the thread starts (overwritten as compaction moves on). */
export function compactionKey(tenant: string, threadId: string): string {
  return `${threadPrefix(tenant, threadId)}compaction.json`;
}

function padSeq(seq: number): string {
  if (!Number.isSafeInteger(seq) || seq < 0 || seq >= 10 ** SEQ_DIGITS) {
    throw new RangeError(`seq out of range: ${seq}`);
  }
  return String(seq).padStart(SEQ_DIGITS, "0");
}
