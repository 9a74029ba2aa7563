/** Rollout keys, exactly as API.md lays them out. Tenant and threadId are validated upstream. */

const SEQ_DIGITS = 12;

export function threadPrefix(tenant: string, threadId: string): string {
  return `tenants/${tenant}/threads/${threadId}/`;
}

export function patchesPrefix(tenant: string, threadId: string): string {
  return `${threadPrefix(tenant, threadId)}patches/`;
}

export function snapshotsPrefix(tenant: string, threadId: string): string {
  return `${threadPrefix(tenant, threadId)}snapshots/`;
}

export function patchKey(tenant: string, threadId: string, seq: number): string {
  return `${patchesPrefix(tenant, threadId)}${padSeq(seq)}.json`;
}

export function snapshotKey(tenant: string, threadId: string, seq: number): string {
  return `${snapshotsPrefix(tenant, threadId)}${padSeq(seq)}.json`;
}

function padSeq(seq: number): string {
  if (!Number.isSafeInteger(seq) || seq < 0 || seq >= 10 ** SEQ_DIGITS) throw new RangeError(`seq out of range: ${seq}`);
  return String(seq).padStart(SEQ_DIGITS, "0");
}

/** The seq of a patch or snapshot key, or null for anything else under the prefix. */
export function seqOfKey(key: string): number | null {
  const match = /\/(\d{12})\.json$/.exec(key);
  return match ? Number(match[1]) : null;
}
