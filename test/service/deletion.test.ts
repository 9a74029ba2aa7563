/**
 * Deletion never costs an acknowledged write: a deleted life's commit keys stay occupied
 * (stubs without user data) for the retention period, no writer aims with a head older
 * than a quarter of it, and a writer or reader that knows nothing of a thread finds its
 * current life from the rollout. Two services ("processes") on one rollout, each with
 * its own libSQL file, on one injected clock: the retention passes in a test.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { afterEach, describe, expect, it, vi } from "vitest";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import type { BlobStore } from "../../src/blob/port.ts";
import { LibsqlCache } from "../../src/cache/libsql.ts";
import type { JsonValue } from "../../src/model/json.ts";
import { type ArtifactPatch, commitOf, patchesOf } from "../../src/model/patch.ts";
import { Compactor } from "../../src/rollout/compaction.ts";
import { allPatches, stateAt } from "../../src/rollout/history.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { ArtifactService } from "../../src/service/artifact-service.ts";
import { objectStoreView } from "../support/object-store-view.ts";

const T = "local";
const HOUR = 3600_000;
const RETENTION = 8 * HOUR;

const dirs: string[] = [];
const caches: LibsqlCache[] = [];
const services: ArtifactService[] = [];
afterEach(async () => {
  for (const service of services.splice(0)) await service.idle();
  for (const cache of caches.splice(0)) cache.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A store whose listings and gets are round trips (as S3 and R2): the rollout lists instead of following keys. */
const remote = objectStoreView;

function setup(options: { compactEvery?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "artifacts-deletion-"));
  dirs.push(dir);
  const store = new MemoryBlobStore();
  const rollout = new Rollout(store);
  let clock = Date.parse("2026-12-01T00:00:00.000Z");
  const now = () => new Date(clock);
  const advance = (ms: number) => void (clock += ms);
  /** A process: a service of its own over the shared rollout, with a libSQL file of its own (or the one given). */
  const process = (file: string) => {
    const cache = new LibsqlCache({
      connect: () => createClient({ url: `file:${join(dir, file)}`, concurrency: 1 }),
      local: true,
    });
    caches.push(cache);
    const service = new ArtifactService({
      rollout,
      cache,
      limits: { maxPayloadBytes: 65536, maxArtifactsPerThread: 1000 },
      compaction: { everyPatches: options.compactEvery ?? 64 },
      deleteRetentionMs: RETENTION,
      backoff: async () => {},
      now,
    });
    services.push(service);
    return { cache, service };
  };
  /** What each commit key of the thread holds: a commit's seqs, or a stub's range and tombstone. */
  const keys = async (threadId: string) => {
    const prefix = `tenants/${T}/threads/${threadId}/commits/`;
    return Promise.all((await store.list(prefix)).map(async (key) => JSON.parse((await store.get(key)) as string)))
      .then((objects) =>
        objects.map((o) =>
          "tombstone" in o ? `stub ${o.firstSeq}-${o.lastSeq}>${o.tombstone}` : `${o.firstSeq}-${o.lastSeq}`
        )
      );
  };
  return { store, rollout, now, advance, process, keys, dir };
}

const note = (payload: JsonValue) => ({ kind: "create" as const, artifactType: "note", identityKey: null, payload });
const keyed = (payload: JsonValue) => ({ kind: "create" as const, artifactType: "note", identityKey: "k", payload });
const anyVersion = { kind: "any" } as const;

describe("a delete keeps its life's keys occupied", () => {
  it("stubs without user data at once, freed after the retention but seq 1's, which leads to the current life", async () => {
    const { store, advance, process, keys } = setup({ compactEvery: 2 });
    const { service } = process("a.db");
    for (const n of [1, 2, 3]) await service.writeArtifact(T, "t", note({ secret: n }));
    await service.idle();
    expect(await store.list(`tenants/${T}/threads/t/deltas/`)).not.toEqual([]);
    expect((await service.deleteThread(T, "t", anyVersion)).seq).toBe(4);
    await service.idle();
    expect(await keys("t")).toEqual(["stub 1-1>4", "stub 2-2>4", "stub 3-3>4", "4-4"]);
    const everything = await Promise.all((await store.list(`tenants/${T}/threads/t/`)).map((k) => store.get(k)));
    expect(everything.join("\n")).not.toContain("secret");
    expect(JSON.parse((await store.get(`tenants/${T}/threads/t/life.json`)) as string)).toMatchObject({
      since: 4,
      swept: "content",
    });

    // Within the retention a touch changes nothing; past it, the next touch frees the keys.
    await service.writeArtifact(T, "t", note("next life"));
    advance(RETENTION - HOUR);
    await service.readThread(T, "t", { consistency: "strong" });
    await service.idle();
    expect(await keys("t")).toEqual(["stub 1-1>4", "stub 2-2>4", "stub 3-3>4", "4-4", "5-5"]);
    advance(2 * HOUR);
    await service.readThread(T, "t", { consistency: "strong" });
    await service.idle();
    expect(await keys("t")).toEqual(["stub 1-3>4", "4-4", "5-5"]);
    expect(JSON.parse((await store.get(`tenants/${T}/threads/t/life.json`)) as string)).toMatchObject({
      since: 4,
      swept: "keys",
    });

    // A process that knows nothing of the thread (a new libSQL file) goes on in the current life.
    const fresh = process("fresh.db").service;
    expect((await fresh.writeArtifact(T, "t", note("after"))).thread.rolloutSeq).toBe(6);
    const read = await fresh.readThread(T, "t", { consistency: "strong" });
    expect(JSON.parse(read.thread.artifactsJson).map((a: { payload: unknown }) => a.payload)).toEqual([
      "next life",
      "after",
    ]);
  });

  it("a second delete rewrites only the life it ends (and seq 1's key, which names the latest life)", async () => {
    const { process, keys, rollout } = setup();
    const { service } = process("a.db");
    for (const n of [1, 2, 3]) await service.writeArtifact(T, "t", note(n));
    await service.deleteThread(T, "t", anyVersion);
    await service.idle();
    await service.writeArtifact(T, "t", note(5));
    expect((await service.deleteThread(T, "t", anyVersion)).seq).toBe(6);
    await service.idle();
    // Keys 2-3 keep the first delete's stubs (they lead to 4, itself a stub leading to 6).
    expect(await keys("t")).toEqual(["stub 1-1>6", "stub 2-2>4", "stub 3-3>4", "stub 4-4>6", "stub 5-5>6", "6-6"]);
    expect((await rollout.commitAt(T, "t", 2))?.firstSeq).toBe(6);
    expect((await service.writeArtifact(T, "t", note(7))).thread.rolloutSeq).toBe(7);
    const fresh = process("fresh.db").service;
    expect((await fresh.writeArtifact(T, "t", note(8))).thread.rolloutSeq).toBe(8);
  });

  it("a writer whose remembered head is older than a quarter of the retention does not aim with it", async () => {
    const { advance, process, keys } = setup();
    const a = process("a.db").service;
    const b = process("b.db").service;
    // A remembers head 1 (its own plain create: decided without a cache read next time).
    expect((await a.writeArtifact(T, "t", note("a1"))).thread.rolloutSeq).toBe(1);
    expect((await b.writeArtifact(T, "t", note("b2"))).thread.rolloutSeq).toBe(2);
    expect((await b.deleteThread(T, "t", anyVersion)).seq).toBe(3);
    await b.idle();
    expect((await b.writeArtifact(T, "t", note("b4"))).thread.rolloutSeq).toBe(4);
    // The retention passes; B's next touch frees key 2, the one A's head points at.
    advance(RETENTION + HOUR);
    await b.readThread(T, "t", { consistency: "strong" });
    await b.idle();
    expect(await keys("t")).toEqual(["stub 1-2>3", "3-3", "4-4"]);

    const late = await a.writeArtifact(T, "t", note("a5"));
    expect(late.thread.rolloutSeq).toBe(5);
    expect(await keys("t")).toEqual(["stub 1-2>3", "3-3", "4-4", "5-5"]);
  });

  it("a cache restored from an old backup never moves a thread back: its head is checked against the life", async () => {
    const { dir, advance, process, keys } = setup();
    const a = process("a.db").service;
    const b = process("b.db").service;
    await a.writeArtifact(T, "t", keyed("v1"));
    await a.idle();
    // The backup: A's libSQL file as it is now (at seq 1).
    const { copyFileSync } = await import("node:fs");
    copyFileSync(join(dir, "a.db"), join(dir, "backup.db"));
    await b.writeArtifact(T, "t", note("b2"));
    await b.deleteThread(T, "t", anyVersion);
    await b.writeArtifact(T, "t", keyed("v4"));
    advance(RETENTION + HOUR);
    await b.readThread(T, "t", { consistency: "strong" });
    await b.idle();
    expect(await keys("t")).toEqual(["stub 1-2>3", "3-3", "4-4"]);

    const restored = process("backup.db").service;
    // Decided on the cache (an identity create reads it): at seq 1 it would aim at key 2, freed.
    const write = await restored.writeArtifact(T, "t", keyed("v4"));
    expect(write.created).toBe(false);
    expect(write.thread.rolloutSeq).toBe(4);
    const read = await restored.readThread(T, "t", { consistency: "strong" });
    expect(read.thread.seq).toBe(4);
    expect(JSON.parse(read.thread.artifactsJson).map((x: { payload: unknown }) => x.payload)).toEqual(["v4"]);
    expect(await keys("t")).toEqual(["stub 1-2>3", "3-3", "4-4"]);
  });

  it("a round that outlives the fresh window (a process paused mid-write) is decided again", async () => {
    const { advance, process, keys } = setup();
    const a = process("a.db");
    const b = process("b.db").service;
    await a.service.writeArtifact(T, "t", keyed("v1"));
    const read = vi.spyOn(a.cache, "writeContext");
    read.mockImplementationOnce(async (...args) => {
      const context = await a.cache.writeContext(...args);
      // Paused right after reading its context: meanwhile the thread is deleted, goes on,
      // and its old keys are freed after the retention.
      await b.writeArtifact(T, "t", note("b2"));
      await b.deleteThread(T, "t", anyVersion);
      await b.writeArtifact(T, "t", note("b4"));
      advance(RETENTION + HOUR);
      await b.readThread(T, "t", { consistency: "strong" });
      await b.idle();
      return context;
    });
    const write = await a.service.writeArtifact(T, "t", keyed("v5"));
    expect(write.created).toBe(true);
    expect(write.thread.rolloutSeq).toBe(5);
    expect(read.mock.calls.length).toBeGreaterThanOrEqual(2);
    expect(await keys("t")).toEqual(["stub 1-2>3", "3-3", "4-4", "5-5"]);
  });

  it("a write that landed before a delete answers its 2xx, once", async () => {
    const { rollout, process } = setup();
    const a = process("a.db").service;
    const b = process("b.db").service;
    await a.writeArtifact(T, "t", note(1));
    // B's delete lands right after A's commit, before A applies it to its cache.
    const apply = vi.spyOn(caches[0] as LibsqlCache, "apply");
    apply.mockImplementationOnce(async (...args) => {
      await b.deleteThread(T, "t", anyVersion);
      await b.idle();
      return (caches[0] as LibsqlCache).apply(...args);
    });
    const write = await a.writeArtifact(T, "t", keyed("landed"));
    expect(write.created).toBe(true);
    expect(write.thread.rolloutSeq).toBe(2);
    // Its key holds a stub now (the delete at 3 took it), and it is in no life but its own.
    expect(patchesOf(await rollout.listCommits(T, "t", 0)).map((p) => [p.seq, p.op])).toEqual([[3, "delete"]]);
    const next = await a.writeArtifact(T, "t", keyed("landed"));
    expect(next.created).toBe(true);
    expect(next.thread.rolloutSeq).toBe(4);
  });
});

describe("readers through stubs", () => {
  for (const [name, wrap] of [["local", (s: BlobStore) => s], ["remote", remote]] as const) {
    it(`follow, list and tail past a deleted life to its tombstone (${name} reads)`, async () => {
      const store = new MemoryBlobStore();
      const rollout = new Rollout(wrap(store));
      const at = "2026-12-01T00:00:00.000Z";
      const artifact = (seq: number) => ({
        id: `0193f0c2-7d4a-7c1e-9b1a-3f9d2c1e8a${String(seq).padStart(2, "0")}`,
        threadId: "t",
        artifactType: "n",
        identityKey: null,
        payload: seq,
        version: 1,
        createdAt: at,
        updatedAt: at,
        seq,
      });
      const add = (seq: number): ArtifactPatch => ({ seq, threadId: "t", at, op: "add", artifact: artifact(seq) });
      await rollout.append(T, commitOf([add(1), add(2)]));
      await rollout.append(T, commitOf([add(3)]));
      await rollout.append(T, commitOf([{ seq: 4, threadId: "t", at, op: "delete" }]));
      await rollout.append(T, commitOf([add(5)]));
      await rollout.writeLife(T, "t", { lifeStart: 4, deletedAt: at });
      expect(await rollout.stubPast(T, "t", 4, { sweptBelow: 1, concurrency: 4 })).toBe(2);

      expect((await rollout.commitAt(T, "t", 3))?.firstSeq).toBe(4);
      expect((await rollout.followCommits(T, "t", 0)).map((c) => c.firstSeq)).toEqual([4, 5]);
      expect((await rollout.listCommits(T, "t", 0)).map((c) => c.firstSeq)).toEqual([4, 5]);
      expect((await rollout.patchesAfter(T, "t", 1, 10)).map((p) => [p.seq, p.op])).toEqual([[4, "delete"], [
        5,
        "add",
      ]]);
      const loaded = await rollout.load(T, "t");
      expect(loaded?.seq).toBe(5);
      expect(loaded?.artifacts.map((a) => a.payload)).toEqual([5]);

      // Past the retention: only seq 1's key is left below the life, and it leads there.
      expect(await rollout.freePast(T, "t", 4, 4)).toBe(1);
      expect(await store.list("tenants/local/threads/t/commits/")).toHaveLength(3);
      expect((await rollout.listCommits(T, "t", 0)).map((c) => c.firstSeq)).toEqual([4, 5]);
      expect((await rollout.load(T, "t"))?.seq).toBe(5);
    });
  }
});

describe("history reads on an object store", () => {
  /** `remote(store)` that counts its calls by operation. */
  function counted(store: BlobStore) {
    const calls = { list: 0, get: 0 };
    const inner = remote(store);
    return {
      calls,
      store: {
        ...inner,
        get: (key: string) => (calls.get++, inner.get(key)),
        list: (
          prefix: string,
          options?: Parameters<BlobStore["list"]>[1],
        ) => (calls.list++, inner.list(prefix, options)),
      } satisfies BlobStore,
    };
  }

  it("one listing finds the life marker and the compaction objects; the past reads as from a local store", async () => {
    const { store, rollout: local, process } = setup({ compactEvery: 2 });
    const { service } = process("a.db");
    for (const n of [1, 2, 3]) await service.writeArtifact(T, "t", note(n));
    await service.deleteThread(T, "t", anyVersion);
    for (const n of [5, 6, 7, 8]) await service.writeArtifact(T, "t", note(n));
    await service.idle();
    expect(await store.get(`tenants/${T}/threads/t/life.json`)).not.toBeNull();
    expect(await store.list(`tenants/${T}/threads/t/deltas/`)).not.toEqual([]);

    const { calls, store: objects } = counted(store);
    const far = new Rollout(objects);
    const index = await far.historyIndex(T, "t");
    // The listing, and the life marker's get (it is listed: the thread was deleted).
    expect(calls).toEqual({ list: 1, get: 1 });
    expect(index.boundary).toBe(3);
    expect(index).toEqual(await local.historyIndex(T, "t"));
    for (let seq = 0; seq <= 9; seq++) {
      expect(await stateAt(far, T, "t", seq)).toEqual(await stateAt(local, T, "t", seq));
    }
    expect((await stateAt(far, T, "t", 8))?.artifacts.map((a) => a.payload)).toEqual([5, 6, 7, 8]);
    expect(await allPatches(far, T, "t")).toEqual(await allPatches(local, T, "t"));
  });

  it("a thread never deleted nor compacted: its index is one listing, an as-of read or its versions four requests with two commits", async () => {
    const { store, process } = setup();
    const { service } = process("a.db");
    for (const n of [1, 2]) await service.writeArtifact(T, "u", note(n));
    await service.idle();

    const { calls, store: objects } = counted(store);
    const far = new Rollout(objects);
    expect(await far.historyIndex(T, "u")).toEqual({ boundary: 0, ranges: [], snapshots: [] });
    expect(calls).toEqual({ list: 1, get: 0 });
    // The index; the listing of the commits; the two commits.
    calls.list = calls.get = 0;
    expect((await stateAt(far, T, "u", 2))?.seq).toBe(2);
    expect(calls).toEqual({ list: 2, get: 2 });
    calls.list = calls.get = 0;
    expect((await allPatches(far, T, "u")).map((p) => p.seq)).toEqual([1, 2]);
    expect(calls).toEqual({ list: 2, get: 2 });
  });
});

describe("a commit whose put answer was lost", () => {
  it("read back as a stub (its life deleted meanwhile) stays unknown: the error stands, never a lost race", async () => {
    const inner = new MemoryBlobStore();
    const lost: BlobStore = {
      ...remote(inner),
      putIfAbsent: async (key, body) => {
        await inner.putIfAbsent(key, body);
        // The commit landed; a delete and its sweep stubbed it before the writer could read it back.
        await inner.put(key, JSON.stringify({ v: 2, firstSeq: 1, lastSeq: 1, tombstone: 2 }));
        throw new Error("response lost");
      },
    };
    const at = "2026-12-01T00:00:00.000Z";
    const commit = commitOf([{ seq: 1, threadId: "t", at, op: "delete" }]);
    await expect(new Rollout(lost).append(T, commit)).rejects.toThrow("response lost");
  });
});

describe("compaction and deletion", () => {
  it("a compactor that read a life before its delete removes what it wrote after the sweep", async () => {
    const { store, rollout, process, keys } = setup();
    const { service } = process("a.db");
    for (const n of [1, 2, 3]) await service.writeArtifact(T, "t", note({ secret: n }));
    const compactor = new Compactor(rollout, { everyPatches: 1 });
    const put = store.putIfAbsent.bind(store);
    let deleted = false;
    vi.spyOn(store, "putIfAbsent").mockImplementation(async (key, body) => {
      if (key.includes("/deltas/") && !deleted) {
        // The delete and its whole sweep happen between the compactor's reads and its writes.
        deleted = true;
        await service.deleteThread(T, "t", anyVersion);
        await service.idle();
      }
      return put(key, body);
    });
    await compactor.compactOnce(T, "t");
    expect(deleted).toBe(true);
    expect(await keys("t")).toEqual(["stub 1-1>4", "stub 2-2>4", "stub 3-3>4", "4-4"]);
    const left = await store.list(`tenants/${T}/threads/t/`);
    expect(left.filter((k) => !k.includes("/commits/") && !k.endsWith("life.json"))).toEqual([]);
    const everything = await Promise.all(left.map((k) => store.get(k)));
    expect(everything.join("\n")).not.toContain("secret");
  });

  it("a compactor killed after writing a delta of the deleted life, before its own check: the sweep removes it", async () => {
    const { store, rollout, process } = setup();
    const { service } = process("a.db");
    for (const n of [1, 2, 3]) await service.writeArtifact(T, "t", note({ secret: n }));
    // What a compactor read before the delete, and writes while the sweep runs (then dies).
    const past = commitOf(patchesOf(await rollout.listCommits(T, "t", 0)));
    const put = store.put.bind(store);
    let written = false;
    vi.spyOn(store, "put").mockImplementation(async (key, body) => {
      if (key.includes("/commits/") && !written) {
        // The sweep has listed the thread and removed what it found; now the dead compactor's delta lands.
        written = true;
        await rollout.compaction.writeDelta(T, past);
      }
      return put(key, body);
    });
    await service.deleteThread(T, "t", anyVersion);
    await service.idle();
    expect(written).toBe(true);
    const left = await store.list(`tenants/${T}/threads/t/`);
    expect(left.filter((k) => k.includes("/deltas/") || k.includes("/snapshots/"))).toEqual([]);
    const everything = await Promise.all(left.map((k) => store.get(k)));
    expect(everything.join("\n")).not.toContain("secret");
  });

  it("forkedFrom survives an as-of read inside a delta that starts with a tombstone and goes on into a fork", async () => {
    const { rollout, process } = setup({ compactEvery: 4 });
    const { service } = process("a.db");
    await service.writeArtifact(T, "source", note("s1"));
    await service.writeArtifact(T, "source", note("s2"));
    await service.writeArtifact(T, "t", note("old"));
    await service.deleteThread(T, "t", anyVersion);
    await service.idle();
    const fork = await service.fork(T, "source", "t");
    expect(fork.forkedFrom).toEqual({ threadId: "source", seq: 2 });
    await service.writeArtifact(T, "t", note("after"));
    await service.idle();
    // One delta holds the tombstone (2) and the fork (3-4); the next write (5) is the tail.
    expect(await rollout.compaction.deltaRanges(T, "t")).toEqual([{ firstSeq: 2, lastSeq: 4 }]);
    for (const seq of [3, 4, 5]) {
      expect((await service.readThreadAt(T, "t", seq)).forkedFrom).toEqual({ threadId: "source", seq: 2 });
    }
  });
});
