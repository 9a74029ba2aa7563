/**
 * R2BlobStore, executed inside workerd (Miniflare 5, local R2), through the shared BlobStore
 * contract and a few R2-specific checks. The Node side only forwards calls: see
 * test/support/r2-proxy-store.ts and test/support/r2-worker.ts.
 */
import { createHash } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { BlobStore } from "../../src/blob/port.ts";
import { R2Worker } from "../support/r2-proxy-store.ts";
import { describeBlobStoreContract } from "./contract.ts";

let worker: R2Worker;

beforeAll(async () => {
  worker = await R2Worker.start();
});

afterAll(async () => {
  await worker?.dispose();
});

// One workerd for the file; each store starts from an emptied bucket (reset throws unless it lists empty).
describeBlobStoreContract("r2 (workerd)", async () => {
  await worker.reset();
  return { store: worker.store() };
});

const md5 = (text: string) => createHash("md5").update(text, "utf8").digest("hex");

describe("R2BlobStore in workerd specifics", () => {
  let store: BlobStore;

  beforeEach(async () => {
    await worker.reset();
    store = worker.store();
  });

  it("two concurrent large putIfAbsent: one creator, and R2 holds exactly that creator's bytes", async () => {
    const key = "race/large/000000000001.json";
    const bodies = ["A", "B"].map((tag) => `${tag}:${`${tag}é漢🙂`.repeat(200_000)}:${tag}`);
    const results = await Promise.all(bodies.map((body) => store.putIfAbsent(key, body)));
    expect([...results].sort()).toEqual(["created", "exists"]);
    const creator = bodies[results.indexOf("created")] as string;

    const stored = await worker.raw(key);
    expect(stored).not.toBeNull();
    expect(stored?.body === creator).toBe(true);
    expect(stored?.size).toBe(Buffer.byteLength(creator, "utf8"));
    expect(stored?.etag).toBe(md5(creator));
    expect(await store.get(key) === creator).toBe(true);
  });

  it("a losing putIfAbsent writes nothing, even with the same body: R2's object version is unchanged", async () => {
    const key = "p/000000000001.json";
    expect(await store.putIfAbsent(key, "first")).toBe("created");
    const before = await worker.raw(key);
    expect(before?.body).toBe("first");

    expect(await store.putIfAbsent(key, "first")).toBe("exists");
    expect(await store.putIfAbsent(key, "second")).toBe("exists");
    const after = await worker.raw(key);
    expect(after).toEqual(before);

    // whereas a plain put does write a new version
    await store.put(key, "first");
    const overwritten = await worker.raw(key);
    expect(overwritten?.body).toBe("first");
    expect(overwritten?.version).not.toBe(before?.version);
  });
});

describe("R2BlobStore in workerd: listing past R2's 1000-key page", () => {
  const keys = Array.from({ length: 1105 }, (_, i) => `many/patches/${String(i + 1).padStart(12, "0")}.json`);
  let store: BlobStore;

  // Seeded once: these tests only read.
  beforeAll(async () => {
    await worker.reset();
    store = worker.store();
    for (let i = 0; i < keys.length; i += 100) {
      await Promise.all(keys.slice(i, i + 100).map((key) => store.put(key, "{}")));
    }
    await store.put("other/x.json", "{}");
  });

  it("follows truncated/cursor until the limit, in ascending order", async () => {
    expect(await store.list("many/", { limit: 5000 })).toEqual(keys);
    expect(await store.list("", { limit: 1103 })).toEqual(keys.slice(0, 1103));
    expect(await store.list("", { limit: 5000 })).toEqual([...keys, "other/x.json"]);
  });

  it("the default limit is 1000, and startAfter holds across pages", async () => {
    expect(await store.list("many/")).toEqual(keys.slice(0, 1000));
    expect(await store.list("many/", { startAfter: keys[49], limit: 1050 })).toEqual(keys.slice(50, 1100));
    expect(await store.list("many/", { startAfter: keys[999] })).toEqual(keys.slice(1000));
  });
});
