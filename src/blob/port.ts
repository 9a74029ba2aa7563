/**
 * The object-storage port the rollout is written to. Bodies are UTF-8 text (the
 * rollout stores JSON). Keys are `/`-separated; every adapter lists in ascending
 * key order (UTF-8 byte order, which equals UTF-16 order for the ASCII keys we write).
 */
export interface BlobStore {
  get(key: string): Promise<string | null>;
  /** Atomic create: exactly one of many concurrent callers gets `created`. Never exposes a partial object. */
  putIfAbsent(key: string, body: string): Promise<PutIfAbsentResult>;
  /** Overwrite (snapshots): readers see the old or the new object, never a mix. */
  put(key: string, body: string): Promise<void>;
  exists(key: string): Promise<boolean>;
  /** Removes the object if it is there (a missing key is not an error). */
  delete(key: string): Promise<void>;
  /** Keys starting with `prefix`, strictly after `startAfter`, ascending, at most `limit` (default 1000). */
  list(prefix: string, options?: ListOptions): Promise<string[]>;
  /**
   * Optional: true when a get costs no network round trip (a local folder, memory), so
   * following a few keys one by one beats a listing, which on a filesystem reads the
   * whole folder. Object stores leave it unset: there one listing is one round trip.
   */
  readonly localReads?: boolean;
}

export type PutIfAbsentResult = "created" | "exists";

export interface ListOptions {
  startAfter?: string;
  limit?: number;
}

export const DEFAULT_LIST_LIMIT = 1000;

/** Keys are plain relative paths: no empty, `.` or `..` segments, no control characters. */
export function assertValidKey(key: string): void {
  if (key.length === 0 || key.length > 1024 || INVALID_KEY.test(key)) throw new InvalidKeyError(key);
}

/**
 * A control character (Unicode's Cc: U+0000–U+001F and U+007F–U+009F), a backslash, or
 * an empty, `.` or `..` segment. One regex without the `u` flag: every blob call checks
 * its key, and a split per call showed in the write path's profile.
 */
// deno-lint-ignore no-control-regex -- the control characters are what it refuses
const INVALID_KEY = /[\x00-\x1f\x7f-\x9f\\]|(?:^|\/)\.{0,2}(?:\/|$)/;

export class InvalidKeyError extends Error {
  constructor(key: string) {
    super(`invalid blob key: ${JSON.stringify(key.slice(0, 100))}`);
    this.name = "InvalidKeyError";
  }
}

/** Sorts keys by code unit, the order every adapter must list in. */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
