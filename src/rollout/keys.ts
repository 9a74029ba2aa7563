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
  if (!Number.isSafeInteger(seq) || seq < 0 || seq >= 10 ** SEQ_DIGITS) {
    throw new RangeError(`seq out of range: ${seq}`);
  }
  return String(seq).padStart(SEQ_DIGITS, "0");
}
