import type { BlobStore } from "../../src/blob/port.ts";

/**
 * `store` as an object store sees it: the same objects, without `localReads`, so a
 * Rollout over it lists where it would follow keys one by one (as on S3 and R2), and
 * the memory store can stand in for those paths in unit tests.
 */
export function objectStoreView(store: BlobStore): BlobStore {
  return {
    get: (key) => store.get(key),
    putIfAbsent: (key, body) => store.putIfAbsent(key, body),
    put: (key, body) => store.put(key, body),
    exists: (key) => store.exists(key),
    delete: (key) => store.delete(key),
    list: (prefix, options) => store.list(prefix, options),
  };
}
