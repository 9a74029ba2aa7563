import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import process from "node:process";
import { FsBlobStore } from "../../src/blob/fs.ts";
import { nodeFsOps } from "../../src/blob/fs-ops.ts";
import { inProcessCommitWriter } from "../../src/blob/fs-commit-batch.ts";
import { CommitThread } from "../../src/blob/fs-commit-thread.ts";
import { describeBlobStoreContract } from "./contract.ts";

describeBlobStoreContract("fs", async () => {
  const root = await mkdtemp(join(tmpdir(), "blob-contract-"));
  return { store: new FsBlobStore(root), cleanup: () => rm(root, { recursive: true, force: true }) };
});

// Every key through the commit journal, as the servers write commits.
describeBlobStoreContract("fs, journaled", async () => {
  const root = await mkdtemp(join(tmpdir(), "blob-contract-journal-"));
  const store = new FsBlobStore(root, nodeFsOps, { journaled: () => true, pid: process.pid, isAlive: () => true });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(root, { recursive: true, force: true });
    },
  };
});

// The same, with the journal's flushes on their own thread (as the Node server runs them).
describeBlobStoreContract("fs, journaled, flushed on a thread", async () => {
  const root = await mkdtemp(join(tmpdir(), "blob-contract-thread-"));
  const store = new FsBlobStore(root, nodeFsOps, {
    journaled: () => true,
    pid: process.pid,
    isAlive: () => true,
    commitWriter: () => new CommitThread(inProcessCommitWriter(nodeFsOps)),
  });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(root, { recursive: true, force: true });
    },
  };
});

/** Files left in the store's temp folder (none if the folder does not exist). */
async function tempFiles(root: string): Promise<string[]> {
  try {
    return await readdir(join(root, ".tmp"));
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") return [];
    throw error;
  }
}

describe("FsBlobStore specifics", () => {
  let root: string;
  let store: FsBlobStore;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "blob-fs-"));
    store = new FsBlobStore(root);
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("objects are plain files at their key path, byte for byte", async () => {
    const body = '{"x":"héllo 🚀"}';
    expect(await store.putIfAbsent("tenants/t/threads/a/patches/000000000001.json", body)).toBe("created");
    await store.put("tenants/t/threads/a/snapshots/000000000001.json", body);
    const expected = Buffer.from(body, "utf8");
    expect((await readFile(join(root, "tenants/t/threads/a/patches/000000000001.json"))).equals(expected)).toBe(true);
    expect((await readFile(join(root, "tenants/t/threads/a/snapshots/000000000001.json"))).equals(expected)).toBe(true);
  });

  it("successful writes leave no temp files behind, and none are listed", async () => {
    await store.put("a/snapshot.json", "one");
    await store.put("a/snapshot.json", "two");
    expect(await store.putIfAbsent("a/patch.json", "created")).toBe("created");
    expect(await store.putIfAbsent("a/patch.json", "loses")).toBe("exists");
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.putIfAbsent("b/race.json", `body ${i}`)),
    );
    expect(results.filter((result) => result === "created")).toHaveLength(1);
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.put("b/overwrite.json", `body ${i}`)));

    expect(await tempFiles(root)).toEqual([]);
    expect(await store.list("")).toEqual(["a/patch.json", "a/snapshot.json", "b/overwrite.json", "b/race.json"]);
    expect(await store.list(".tmp")).toEqual([]);
    expect(await store.list(".tmp/")).toEqual([]);
  });

  it("a failed write leaves no temp file behind", async () => {
    await store.put("dir/child.json", "child");
    // "dir" is a folder on disk, so an object cannot be renamed over it.
    await expect(store.put("dir", "body")).rejects.toThrow();
    expect(await tempFiles(root)).toEqual([]);
    expect(await store.list("")).toEqual(["dir/child.json"]);
  });

  it("temp files a crash left behind are never listed", async () => {
    await store.put("a/kept.json", "kept");
    await mkdir(join(root, ".tmp"), { recursive: true });
    await writeFile(join(root, ".tmp", "0193f0c2-leftover"), "half a bo");
    expect(await store.list("")).toEqual(["a/kept.json"]);
    expect(await store.list(".")).toEqual([]);
    expect(await store.list(".tmp")).toEqual([]);
    expect(await store.list(".tmp/")).toEqual([]);
    // and the store keeps working beside them
    expect(await store.putIfAbsent("a/next.json", "next")).toBe("created");
    expect(await store.list("")).toEqual(["a/kept.json", "a/next.json"]);
  });

  it("the temp folder's name is reserved: such keys are rejected and write nothing", async () => {
    await expect(store.put(".tmp/x", "x")).rejects.toThrow(/reserved/);
    await expect(store.putIfAbsent(".tmp", "x")).rejects.toThrow(/reserved/);
    await expect(store.get(".tmp/x")).rejects.toThrow(/reserved/);
    await expect(store.exists(".tmp")).rejects.toThrow(/reserved/);
    expect(await store.list("")).toEqual([]);
    expect(await tempFiles(root)).toEqual([]);
  });

  it("a key's folder removed out from under the store is recreated on the next write", async () => {
    const dir = "tenants/t/threads/a/patches";
    expect(await store.putIfAbsent(`${dir}/000000000001.json`, "one")).toBe("created");

    await rm(join(root, "tenants/t/threads/a"), { recursive: true });
    expect(await store.putIfAbsent(`${dir}/000000000002.json`, "two")).toBe("created");
    expect(await store.get(`${dir}/000000000002.json`)).toBe("two");

    await rm(join(root, dir), { recursive: true });
    await store.put(`${dir}/000000000003.json`, "three");
    expect(await store.get(`${dir}/000000000003.json`)).toBe("three");

    expect(await store.list("tenants/")).toEqual([`${dir}/000000000003.json`]);
    expect(await tempFiles(root)).toEqual([]);
  });

  it("the temp folder removed out from under the store is recreated on the next write", async () => {
    await store.put("a/one.json", "one");
    await rm(join(root, ".tmp"), { recursive: true });
    expect(await store.putIfAbsent("a/two.json", "two")).toBe("created");
    await rm(join(root, ".tmp"), { recursive: true });
    await store.put("a/three.json", "three");
    expect(await store.list("a/")).toEqual(["a/one.json", "a/three.json", "a/two.json"]);
    expect(await store.get("a/three.json")).toBe("three");
  });

  it("the whole root removed out from under the store is recreated on the next write", async () => {
    await store.put("a/one.json", "one");
    await rm(root, { recursive: true });
    expect(await store.list("")).toEqual([]);
    expect(await store.putIfAbsent("a/two.json", "two")).toBe("created");
    expect(await store.list("")).toEqual(["a/two.json"]);
  });

  it("a root that does not exist yet reads as empty and is created on the first write", async () => {
    const fresh = new FsBlobStore(join(root, "not", "yet"));
    expect(await fresh.get("a/b.json")).toBeNull();
    expect(await fresh.exists("a/b.json")).toBe(false);
    expect(await fresh.list("")).toEqual([]);
    expect(await fresh.putIfAbsent("a/b.json", "b")).toBe("created");
    expect(await readFile(join(root, "not", "yet", "a", "b.json"), "utf8")).toBe("b");
  });

  it("two store instances on one folder share objects and putIfAbsent", async () => {
    const other = new FsBlobStore(root);
    expect(await store.putIfAbsent("shared/p.json", "first")).toBe("created");
    expect(await other.putIfAbsent("shared/p.json", "second")).toBe("exists");
    expect(await other.get("shared/p.json")).toBe("first");
    await other.put("shared/s.json", "from other");
    expect(await store.get("shared/s.json")).toBe("from other");
    expect(await store.list("shared/")).toEqual(["shared/p.json", "shared/s.json"]);
  });
});

describe("FsBlobStore, deletes and puts racing in one folder", () => {
  it("16 deletes at once emptying a folder, and puts into it meanwhile, never fail (the folder comes and goes)", async () => {
    const root = await mkdtemp(join(tmpdir(), "blob-fs-race-"));
    try {
      const store = new FsBlobStore(root);
      // Each round empties the folder by 16 concurrent deletes while 4 puts (two stores,
      // as two processes) land in it: the last delete removes the folder under the others.
      for (let round = 0; round < 30; round++) {
        const other = new FsBlobStore(root);
        const keys = Array.from({ length: 16 }, (_, i) => `t/deltas/${round}-${i}.json`);
        await Promise.all(keys.map((key) => store.put(key, "{}")));
        const puts = Array.from({ length: 4 }, (_, i) => `t/deltas/${round}-new-${i}.json`);
        await Promise.all([
          ...keys.map((key) => store.delete(key)),
          ...puts.map((key, i) => (i % 2 ? other.putIfAbsent(key, "{}") : other.put(key, "{}"))),
        ]);
        expect(await store.list(`t/deltas/${round}-`)).toEqual(puts.sort());
        await Promise.all(puts.map((key) => other.delete(key)));
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe("FsBlobStore's commit journal on the real file system", () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "blob-journal-"));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const journals = async () => {
    try {
      return (await readdir(join(root, ".journal"))).filter((name) => name.endsWith(".log"));
    } catch (error) {
      if ((error as { code?: unknown }).code === "ENOENT") return [];
      throw error;
    }
  };
  const journaledOn = (fs: typeof nodeFsOps) =>
    new FsBlobStore(root, fs, { journaled: () => true, pid: process.pid, isAlive: () => true });

  it("flushes the file system at once where it can (Linux: sync --file-system), so it journals there", async () => {
    expect(await nodeFsOps.syncFileSystem(root)).toBe(process.platform === "linux");
  });

  it("journals commits, and a checkpoint flushes them and removes the journal", async () => {
    const store = journaledOn(nodeFsOps);
    try {
      for (const n of [1, 2, 3]) expect(await store.putIfAbsent(`t/${n}.json`, `body ${n}`)).toBe("created");
      expect(await store.putIfAbsent("t/2.json", "loses")).toBe("exists");
      const [journal, ...others] = await journals();
      expect(others).toEqual([]);
      const records = (await readFile(join(root, ".journal", journal as string), "utf8")).trim().split("\n");
      expect(records.map((line) => JSON.parse(line).k)).toEqual(["t/1.json", "t/2.json", "t/3.json"]);
      await store.checkpoint();
      expect(await journals()).toEqual([]);
      for (const n of [1, 2, 3]) expect(await store.get(`t/${n}.json`)).toBe(`body ${n}`);
      expect(await tempFiles(root)).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it("does not journal where the file system cannot be flushed at once: each commit is fsynced itself", async () => {
    const store = journaledOn({ ...nodeFsOps, syncFileSystem: () => Promise.resolve(false) });
    try {
      expect(await store.putIfAbsent("t/1.json", "body")).toBe("created");
      expect(await journals()).toEqual([]);
      expect(await store.get("t/1.json")).toBe("body");
    } finally {
      await store.close();
    }
  });

  it("keeps a journal whose checkpoint failed, and the next checkpoint settles it", async () => {
    // The first flush (the store's probe) works, the next fails, then they work again.
    const answers = [true, false];
    const store = journaledOn({
      ...nodeFsOps,
      syncFileSystem: (path) =>
        answers.length > 0 ? Promise.resolve(answers.shift() as boolean) : nodeFsOps.syncFileSystem(path),
    });
    try {
      expect(await store.putIfAbsent("t/1.json", "one")).toBe("created");
      const [first] = await journals();
      await expect(store.checkpoint()).rejects.toThrow(/could not be synced/);
      expect(await journals()).toEqual([first]);
      expect(await store.putIfAbsent("t/2.json", "two")).toBe("created");
      expect(await journals()).toHaveLength(2);
      await store.checkpoint();
      expect(await journals()).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
