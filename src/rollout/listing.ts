import type { BlobStore } from "../blob/port.ts";
import { afterFolder } from "./keys.ts";

/**
 * Gets run at most this many at a time: a cold read's tail (under ~COMPACT_EVERY commits)
 * and its deltas each fit in one wave, while memory stays bounded. (Workers hold at most
 * six subrequests open per request; there the runtime queues the rest.)
 */
const READ_CONCURRENCY = 64;
const LIST_PAGE = 1000;

/** Keys under `prefix` after `startAfter`, in order, page by page, at most `max`. */
export async function listAll(
  store: BlobStore,
  prefix: string,
  startAfter: string | undefined,
  max = Infinity,
): Promise<string[]> {
  const keys: string[] = [];
  let after = startAfter;
  while (keys.length < max) {
    const limit = Math.min(LIST_PAGE, max - keys.length);
    const page = await store.list(prefix, after === undefined ? { limit } : { startAfter: after, limit });
    keys.push(...page);
    if (page.length < limit) break;
    after = page[page.length - 1];
  }
  return keys;
}

/** The folder names right under `prefix`: list one key, then jump past its folder. */
export async function* folders(store: BlobStore, prefix: string): AsyncGenerator<string> {
  let startAfter: string | undefined;
  for (;;) {
    const [key] = await store.list(prefix, startAfter === undefined ? { limit: 1 } : { startAfter, limit: 1 });
    if (key === undefined) return;
    const rest = key.slice(prefix.length);
    const slash = rest.indexOf("/");
    if (slash <= 0) {
      // An object right under the prefix (none is written there): step over it.
      startAfter = key;
      continue;
    }
    const name = rest.slice(0, slash);
    yield name;
    startAfter = afterFolder(prefix, name);
  }
}

/** `run` over `items` in waves of `size` (a big thread's sweep stays a few waves of requests). */
export async function inBatches<T>(
  items: readonly T[],
  size: number,
  run: (item: T) => Promise<unknown>,
): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(run));
}

/** `run` over `items`, at most READ_CONCURRENCY at once, results in order. */
export async function inParallel<T, R>(items: readonly T[], run: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await run(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, items.length) }, worker));
  return results;
}
