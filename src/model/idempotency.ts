/**
 * `Idempotency-Key` (API.md): a write that changed a thread records its key, with a
 * fingerprint of the request, on the patch it made. The commit is the truth, so a key
 * is honoured wherever the commit is read (another process, a restart, another runtime);
 * the cache, a snapshot and a writer's resident state index the recent ones.
 */

/** What a keyed write carries into its decision (and, once it changes the thread, onto its patch). */
export interface IdempotencyMark {
  /** The header's value: 1-255 printable ASCII characters. */
  key: string;
  /** SHA-256 (base64url) of the method, path, If-Match, media type and body: a repeat must match it. */
  fingerprint: string;
}

/** A key a thread's patch recorded: the write at `seq` answered it. */
export interface IdempotencyRecord extends IdempotencyMark {
  seq: number;
  /** The patch's `at`: how old the key is. */
  at: string;
}

/**
 * How long a key is kept after its write: API.md asks for at least 24 hours; the hour
 * more covers clocks of different processes and a retry that started just in time.
 */
export const KEY_RETENTION_MS = 25 * 60 * 60 * 1000;

/**
 * The most keys a thread's snapshot and resident state keep (the newest): ~100 bytes
 * each, so at most ~1 MB. A thread taking more keyed writes than this within a day keeps
 * the older ones in its commits and the cache only (see docs/decisions.md "Idempotency").
 */
export const MAX_KEYS_PER_THREAD = 10_000;

/** `Idempotency-Key`'s syntax: 1-255 printable ASCII characters (space to tilde). */
export const IDEMPOTENCY_KEY = /^[\x20-\x7e]{1,255}$/;

/**
 * The keys recorded after `patches` (consecutive, after the ones `records` hold), oldest
 * first, pruned to those younger than KEY_RETENTION_MS at the newest patch's time and to
 * the newest MAX_KEYS_PER_THREAD. A delete ends the life's keys, its own kept.
 * Returns `records` itself when nothing changed.
 */
export function recordKeys(
  records: readonly IdempotencyRecord[],
  patches: readonly { seq: number; at: string; op: string; idempotency?: IdempotencyMark }[],
): readonly IdempotencyRecord[] {
  let next: IdempotencyRecord[] | null = null;
  for (const patch of patches) {
    if (patch.op === "delete") next = [];
    const mark = patch.idempotency;
    if (!mark) continue;
    next ??= [...records];
    next.push({ key: mark.key, fingerprint: mark.fingerprint, seq: patch.seq, at: patch.at });
  }
  const kept = next ?? records;
  const last = patches[patches.length - 1];
  if (!last || kept.length === 0) return kept;
  const cutoff = Date.parse(last.at) - KEY_RETENTION_MS;
  let drop = Math.max(0, kept.length - MAX_KEYS_PER_THREAD);
  while (drop < kept.length && Date.parse((kept[drop] as IdempotencyRecord).at) < cutoff) drop++;
  return drop === 0 ? kept : kept.slice(drop);
}

/** The newest record of `key` among `records`, if any. */
export function findKey(records: readonly IdempotencyRecord[] | undefined, key: string): IdempotencyRecord | null {
  if (!records) return null;
  for (let i = records.length - 1; i >= 0; i--) {
    const record = records[i] as IdempotencyRecord;
    if (record.key === key) return record;
  }
  return null;
}
