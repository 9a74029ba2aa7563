/**
 * The fs store's commit journal (src/blob/fs-journal.ts) on the simulated disk of the
 * power-loss tests: a journaled put-if-absent is durable through the journal alone; a
 * checkpoint makes its objects durable on their own and removes the journal; the next
 * process replays a journal its owner left and removes it once the owner is gone, leaves a
 * live owner's alone, never replays a record past MAX_RECORD_AGE_MS, and stops at a torn line.
 */
import { describe, expect, it } from "vitest";
import { FsBlobStore, type FsBlobStoreOptions } from "../../src/blob/fs.ts";
import { MAX_RECORD_AGE_MS } from "../../src/blob/fs-journal.ts";
import type { FsOps } from "../../src/blob/fs-ops.ts";
import { PowerLossDisk } from "../support/power-loss-fs.ts";

const ROOT = "/data/rollouts";
const KEY = "tenants/t/threads/a/commits/000000000001.json";
const journaled = (key: string) => key.includes("/commits/");
const journals = (disk: PowerLossDisk) => [...disk.files().keys()].filter((path) => path.includes("/.journal/"));

function store(disk: PowerLossDisk, options: FsBlobStoreOptions = {}): FsBlobStore {
  return new FsBlobStore(ROOT, disk.ops(), { journaled, pid: 100, isAlive: () => false, ...options });
}

describe("the commit journal", () => {
  it("a journaled put-if-absent survives a power loss through the journal alone; an unjournaled key has its own fsyncs", async () => {
    const disk = new PowerLossDisk();
    const s = store(disk);
    expect(await s.putIfAbsent(KEY, '{"commit":1}')).toBe("created");
    await s.put("tenants/t/threads/a/compaction.json", "{}");
    expect(journals(disk)).toHaveLength(1);
    disk.powerLossNow();
    disk.reboot();
    // Before the replay, the commit's file was lost (never fsynced): the journal brings it back.
    expect(disk.files().get(`${ROOT}/${KEY}`)).toBeUndefined();
    const next = store(disk, { pid: 101 });
    expect(await next.get(KEY)).toBe('{"commit":1}');
    expect(await next.get("tenants/t/threads/a/compaction.json")).toBe("{}");
    // Replayed and made durable: its owner (pid 100) is gone, so the journal went.
    expect(journals(disk)).toEqual([]);
    disk.powerLossNow();
    disk.reboot();
    expect(disk.files().get(`${ROOT}/${KEY}`)).toBe('{"commit":1}');
  });

  it("a journal whose fdatasync failed is set aside and checkpointed: its earlier, acknowledged commits too", async () => {
    const disk = new PowerLossDisk();
    const ops = disk.ops();
    let failNext = false;
    const failing: FsOps = {
      ...ops,
      open: async (path, flags) => {
        const handle = await ops.open(path, flags);
        return {
          ...handle,
          datasync: () => {
            if (!failNext) return handle.datasync();
            failNext = false;
            return Promise.reject(new Error("EIO"));
          },
        };
      },
    };
    const s = new FsBlobStore(ROOT, failing, { journaled, pid: 100, isAlive: () => true });
    expect(await s.putIfAbsent(KEY, "one")).toBe("created");
    failNext = true;
    await expect(s.putIfAbsent("tenants/t/threads/b/commits/000000000001.json", "two")).rejects.toThrow("EIO");
    // The next commit goes to a new journal; the first stays until a checkpoint settles it.
    expect(await s.putIfAbsent("tenants/t/threads/c/commits/000000000001.json", "three")).toBe("created");
    expect(journals(disk)).toHaveLength(2);
    await s.checkpoint();
    expect(journals(disk)).toEqual([]);
    disk.powerLossNow();
    disk.reboot();
    expect(disk.files().get(`${ROOT}/${KEY}`)).toBe("one");
    expect(disk.files().get(`${ROOT}/tenants/t/threads/c/commits/000000000001.json`)).toBe("three");
  });

  it("a checkpoint makes the objects durable on their own and removes the journal", async () => {
    const disk = new PowerLossDisk();
    const s = store(disk);
    await s.putIfAbsent(KEY, "one");
    await s.putIfAbsent("tenants/t/threads/b/commits/000000000001.json", "two");
    await s.close();
    expect(journals(disk)).toEqual([]);
    disk.powerLossNow();
    disk.reboot();
    expect(disk.files().get(`${ROOT}/${KEY}`)).toBe("one");
    expect(disk.files().get(`${ROOT}/tenants/t/threads/b/commits/000000000001.json`)).toBe("two");
  });

  it("leaves a live process's journal to it; replays nothing older than MAX_RECORD_AGE_MS; stops at a torn line", async () => {
    const disk = new PowerLossDisk();
    const dayAgo = Date.now() - MAX_RECORD_AGE_MS - 1;
    const writer = store(disk, { pid: 100 });
    // A record from more than a day ago, and a torn one, appended by hand.
    await writer.putIfAbsent(KEY, "fresh");
    const ops = disk.ops();
    const [live] = journals(disk);
    const handle = await ops.open(live as string, "a");
    handle.appendSync(`{"k":"tenants/t/threads/c/commits/000000000001.json","b":"old","t":${dayAgo}}\n`);
    handle.appendSync(`{"k":"tenants/t/threads/d/commits/000000000001.json","b":"torn"`);
    await handle.datasync();
    disk.powerLossNow();
    disk.reboot();
    // pid 100 still runs: its journal is replayed but stays.
    const reader = store(disk, { pid: 101, isAlive: (pid) => pid === 100 });
    expect(await reader.get(KEY)).toBe("fresh");
    expect(journals(disk)).toHaveLength(1);
    // The record from a day ago was not brought back; nor the torn one.
    expect(await reader.get("tenants/t/threads/c/commits/000000000001.json")).toBeNull();
    expect(await reader.get("tenants/t/threads/d/commits/000000000001.json")).toBeNull();
    // Once pid 100 is gone, the next process removes its journal.
    const later = store(disk, { pid: 102, isAlive: () => false });
    expect(await later.get(KEY)).toBe("fresh");
    expect(journals(disk)).toEqual([]);
  });

  it("an object replaced since its record (a deleted thread's stub) is left as it is", async () => {
    const disk = new PowerLossDisk();
    const s = store(disk);
    await s.putIfAbsent(KEY, '{"v":2,"firstSeq":1,"lastSeq":1,"at":"x","patches":[]}');
    await s.put(KEY, '{"v":2,"firstSeq":1,"lastSeq":1,"tombstone":2}');
    disk.powerLossNow();
    disk.reboot();
    const next = store(disk, { pid: 101 });
    expect(await next.get(KEY)).toBe('{"v":2,"firstSeq":1,"lastSeq":1,"tombstone":2}');
  });
});
