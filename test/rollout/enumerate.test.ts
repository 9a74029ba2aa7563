/**
 * Rollout.listTenants / listThreads, which `rebuild` walks: every tenant and thread
 * exactly once, in the order of their keys, whatever their names sort next to ("a" vs "a-b", "a.b",
 * "a0", "A"), at one `list` call per folder however many commits it holds; on the
 * memory and the fs store (whose listing skips folders before `startAfter` unread).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import type { BlobStore, ListOptions } from "../../src/blob/port.ts";
import { commitKey, snapshotKey } from "../../src/rollout/keys.ts";
import { Rollout } from "../../src/rollout/rollout.ts";

/** Counts list calls and the keys they returned. */
class CountingStore implements BlobStore {
  lists = 0;
  keysListed = 0;
  constructor(readonly inner: BlobStore) {}
  get(key: string) {
    return this.inner.get(key);
  }
  putIfAbsent(key: string, body: string) {
    return this.inner.putIfAbsent(key, body);
  }
  put(key: string, body: string) {
    return this.inner.put(key, body);
  }
  exists(key: string) {
    return this.inner.exists(key);
  }
  delete(key: string) {
    return this.inner.delete(key);
  }
  async list(prefix: string, options?: ListOptions) {
    this.lists++;
    const keys = await this.inner.list(prefix, options);
    this.keysListed += keys.length;
    return keys;
  }
}

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

const STORES: { name: string; make: () => Promise<BlobStore> }[] = [
  { name: "memory", make: async () => new MemoryBlobStore() },
  {
    name: "fs",
    make: async () => {
      const dir = await mkdtemp(join(tmpdir(), "rollout-enum-"));
      dirs.push(dir);
      return new FsBlobStore(dir);
    },
  },
];

// In the order of their keys ("<name>/..."), written out by hand: "-" < "." < "/" < "0" < "A" < "a",
// so "a-b" and "a.b" come before "a", and "a0" after it.
const THREADS = ["A", "a-b", "a.b", "a", "a0", "a0b", "b", "z:9"];
const TENANTS = ["acme-2", "acme.eu", "acme", "acme0", "local"];

for (const { name, make } of STORES) {
  describe(`Rollout enumeration on the ${name} store`, () => {
    it("lists every tenant and every thread once, in order, one list call each (plus the one that finds the end)", async () => {
      const store = new CountingStore(await make());
      for (const tenant of TENANTS) {
        for (const threadId of THREADS) {
          await store.putIfAbsent(commitKey(tenant, threadId, 1), "{}");
          await store.putIfAbsent(commitKey(tenant, threadId, 2), "{}");
          await store.put(snapshotKey(tenant, threadId, 2), "{}");
        }
      }
      const rollout = new Rollout(store);

      store.lists = 0;
      expect(await collect(rollout.listTenants())).toEqual(TENANTS);
      expect(store.lists).toBe(TENANTS.length + 1);

      for (const tenant of TENANTS) {
        store.lists = 0;
        expect(await collect(rollout.listThreads(tenant))).toEqual(THREADS);
        expect(store.lists).toBe(THREADS.length + 1);
      }
      expect(await collect(rollout.listThreads("nobody"))).toEqual([]);
    });

    it("a thread with thousands of commits costs one call and one listed key, not a page of commits", async () => {
      const store = new CountingStore(await make());
      const big = 2500; // more than a list page (1000)
      await Promise.all(Array.from({ length: big }, (_, i) => store.putIfAbsent(commitKey("t", "big", i + 1), "{}")));
      await store.putIfAbsent(commitKey("t", "big-2", 1), "{}");
      await store.putIfAbsent(commitKey("t", "small", 1), "{}");
      const rollout = new Rollout(store);
      store.lists = 0;
      store.keysListed = 0;
      expect(await collect(rollout.listThreads("t"))).toEqual(["big-2", "big", "small"]);
      expect(store.lists).toBe(4);
      expect(store.keysListed).toBe(3);
    });

    it("an object right under the prefix (not in a thread folder) is stepped over", async () => {
      const store = await make();
      await store.putIfAbsent("tenants/t/threads/stray.json", "{}");
      await store.putIfAbsent(commitKey("t", "real", 1), "{}");
      await store.putIfAbsent(commitKey("t", "stray.json0", 1), "{}");
      const rollout = new Rollout(store);
      expect(await collect(rollout.listThreads("t"))).toEqual(["real", "stray.json0"]);
    });
  });
}
