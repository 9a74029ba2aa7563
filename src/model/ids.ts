/** threadId: chosen by the client, safe as a single path segment and as a storage key segment. */
export const THREAD_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Any RFC 9562 UUID in canonical lowercase-or-uppercase hex form. */
export const UUID_PATTERN = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** Tenant ids become rollout key segments and cache keys: the same safe shape as a threadId. */
export const TENANT_PATTERN = THREAD_ID_PATTERN;

/** One thread's key across tenants (maps, topics, object names): NUL never occurs in a tenant. */
export function threadKey(tenant: string, threadId: string): string {
  return `${tenant}\u0000${threadId}`;
}

/** The tenant and thread of a `threadKey`, or null for a string that is not one. */
export function parseThreadKey(key: string): { tenant: string; threadId: string } | null {
  const nul = key.indexOf("\u0000");
  if (nul <= 0) return null;
  const tenant = key.slice(0, nul);
  const threadId = key.slice(nul + 1);
  return TENANT_PATTERN.test(tenant) && THREAD_ID_PATTERN.test(threadId) ? { tenant, threadId } : null;
}

export function isThreadId(value: string): boolean {
  return THREAD_ID_PATTERN.test(value);
}

/**
 * Random bytes drawn 4 KiB at a time: one `getRandomValues` call per 256 ids instead of
 * one per id (each call costs tens of microseconds on Node, more than the rest of an id).
 */
const POOL = new Uint8Array(4096);
let poolOffset = POOL.length;
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** UUIDv7: 48-bit millisecond timestamp, version 7, 74 random bits (RFC 9562 §5.7). */
export function uuidv7(now: number = Date.now()): string {
  if (poolOffset + 16 > POOL.length) {
    crypto.getRandomValues(POOL);
    poolOffset = 0;
  }
  const bytes = POOL.subarray(poolOffset, poolOffset + 16);
  poolOffset += 16;
  let ms = now;
  for (let i = 5; i >= 0; i--) {
    bytes[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x70;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  let hex = "";
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) hex += "-";
    hex += HEX[bytes[i] as number];
  }
  return hex;
}
