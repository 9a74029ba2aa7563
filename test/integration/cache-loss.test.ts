/**
 * DESIGN.md guarantees 1, 3 and 4 with real processes and real libSQL files: the
 * rollout is the truth, the cache is only ever a rebuildable prefix of it.
 * - the libSQL file is deleted between two server lifetimes: nothing is lost;
 * - libSQL is unreachable: writes and reads keep working from the rollout;
 * - one process's cache misses writes made by a process without a cache: it is
 *   repaired by the next strong read and by the next write;
 * - minSeq gives read-your-writes across processes.
 */
import { existsSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import type { Artifact } from "../../src/model/artifact.ts";
import { materialize } from "../../src/model/materialize.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { patchesOf } from "../../src/model/patch.ts";
import type { ServerProcess } from "../support/server-process.ts";
import { waitFor } from "../support/wait.ts";
import {
  closedPort,
  committedSeqs,
  deleteCacheFile,
  expectedCacheRows,
  http,
  range,
  readCacheFile,
  readRollout,
  replay,
  threadView,
  useCluster,
} from "../support/cluster.ts";

const cluster = useCluster();

let deadLibsqlUrl: string;
beforeAll(async () => {
  deadLibsqlUrl = `http://127.0.0.1:${await closedPort()}`;
});

const artifactsPath = (threadId: string) => `/v1/threads/${threadId}/artifacts`;

async function create(
  server: ServerProcess,
  threadId: string,
  body: { artifactType: string; payload: unknown; identityKey?: string },
): Promise<Artifact> {
  const r = await http(server.url, "POST", artifactsPath(threadId), body);
  expect(r.status, r.text).toBe(201);
  return r.json.artifact;
}

async function update(
  server: ServerProcess,
  threadId: string,
  id: string,
  payload: unknown,
  ifMatch?: number,
): Promise<Artifact> {
  const r = await http(
    server.url,
    "PATCH",
    `${artifactsPath(threadId)}/${id}`,
    { payload },
    ifMatch === undefined ? {} : { "if-match": `"${ifMatch}"` },
  );
  expect(r.status, r.text).toBe(200);
  return r.json.artifact;
}

async function remove(server: ServerProcess, threadId: string, id: string): Promise<number> {
  const r = await http(server.url, "DELETE", `${artifactsPath(threadId)}/${id}`);
  expect(r.status, r.text).toBe(200);
  expect(r.json.removed.id).toBe(id);
  return r.json.removed.seq;
}

/**
 * Writes `total` patches: creates (with and without identity), updates (one with
 * If-Match), a remove, then plain creates up to `total`. Returns the last seq.
 */
async function writeHistory(server: ServerProcess, threadId: string, total: number): Promise<number> {
  const plan = await create(server, threadId, {
    artifactType: "plan",
    identityKey: "plan:main",
    payload: { steps: ["a"] },
  });
  const preview = await create(server, threadId, {
    artifactType: "preview",
    payload: { url: "https://example.test/1" },
  });
  const file = await create(server, threadId, {
    artifactType: "file",
    identityKey: "file:readme",
    payload: { name: "README.md", bytes: 10 },
  });
  await update(server, threadId, plan.id, { steps: ["a", "b"] });
  await update(server, threadId, plan.id, { steps: ["a", "b", "c"] }, 2);
  await update(server, threadId, file.id, { name: "README.md", bytes: 42, unicode: "ünï ✓" });
  let seq = await remove(server, threadId, preview.id);
  expect(seq).toBe(7);
  while (seq < total) {
    seq = (await create(server, threadId, {
      artifactType: "note",
      payload: { n: seq + 1, nested: { list: [1, null, true] } },
    })).seq;
  }
  return seq;
}

describe("the libSQL file is deleted between two server lifetimes", () => {
  const cases = [
    { name: "compacted, head past the last delta", compactEvery: "3", total: 11, compactedTo: 9 },
    { name: "compacted, head exactly at a delta's end", compactEvery: "3", total: 12, compactedTo: 12 },
    { name: "never compacted", compactEvery: "100", total: 11, compactedTo: null },
  ];

  for (const c of cases) {
    it(`${c.name}: the thread reads back identical, repaired first, then from the cache`, async () => {
      const { dir, rolloutDir, dbPath } = cluster.dataDir();
      const env = { DATA_DIR: dir, COMPACT_EVERY: c.compactEvery };
      const threadId = "survivor";

      const first = await cluster.start(env);
      expect(await writeHistory(first, threadId, c.total)).toBe(c.total);
      const before = await http(first.url, "GET", `/v1/threads/${threadId}`);
      expect(before.status).toBe(200);
      expect(before.headers.get("x-artifacts-source")).toBe("cache");
      expect(before.json.thread.rolloutSeq).toBe(c.total);
      expect(before.json).toEqual({ thread: threadView(await replay(rolloutDir, threadId)) });
      await first.stop();
      expect(first.child.exitCode).toBe(0);
      // Compaction (run after the answers, finished before the exit) got at least to the
      // last multiple of COMPACT_EVERY the writes crossed (a pass may take later commits too).
      const pointer = await new Rollout(new FsBlobStore(rolloutDir)).compaction.readPointer("local", threadId);
      if (c.compactedTo === null) expect(pointer).toBeNull();
      else expect(pointer?.seq).toBeGreaterThanOrEqual(c.compactedTo);

      deleteCacheFile(dbPath);
      expect(existsSync(dbPath)).toBe(false);

      const second = await cluster.start(env);
      const repaired = await http(second.url, "GET", `/v1/threads/${threadId}`);
      expect(repaired.status).toBe(200);
      expect(repaired.headers.get("x-artifacts-source")).toBe("repaired");
      expect(repaired.headers.get("etag")).toBe(`"${c.total}"`);
      expect(repaired.json).toEqual(before.json);

      const again = await http(second.url, "GET", `/v1/threads/${threadId}`);
      expect(again.headers.get("x-artifacts-source")).toBe("cache");
      expect(again.json).toEqual(before.json);
      const cacheOnly = await http(second.url, "GET", `/v1/threads/${threadId}?consistency=cache`);
      expect(cacheOnly.headers.get("x-artifacts-source")).toBe("cache");
      expect(cacheOnly.json).toEqual(before.json);

      // The rebuilt rows are the thread's state (a snapshot install leaves the events before it to the rollout).
      const rows = await readCacheFile(dbPath, threadId);
      expect(rows.thread).toEqual({
        createdAt: before.json.thread.createdAt,
        updatedAt: before.json.thread.updatedAt,
        seq: c.total,
      });
      expect(rows.artifacts).toEqual(before.json.thread.artifacts);

      // Writing continues at the next seq on top of the rebuilt cache.
      const next = await create(second, threadId, { artifactType: "note", payload: "after rebuild" });
      expect(next.seq).toBe(c.total + 1);
      expect(committedSeqs(rolloutDir, threadId)).toEqual(range(c.total + 1));
      const after = await http(second.url, "GET", `/v1/threads/${threadId}?consistency=cache`);
      expect(after.json).toEqual({ thread: threadView(await replay(rolloutDir, threadId)) });
      expect(after.json.thread.artifacts.slice(0, -1)).toEqual(before.json.thread.artifacts);
    });
  }
});

describe("libSQL unreachable (LIBSQL_URL at a closed port)", () => {
  it("starts, reports the cache down, and serves creates, reads, updates and removes from the rollout", async () => {
    const { dir, rolloutDir } = cluster.dataDir();
    const server = await cluster.start({ DATA_DIR: dir, LIBSQL_URL: deadLibsqlUrl, COMPACT_EVERY: "3" });

    const health = await http(server.url, "GET", "/healthz");
    expect(health.status).toBe(200);
    expect(health.json).toEqual({ ok: true, cache: "down", rollout: "up" });

    const threadId = "no-cache";
    expect(await writeHistory(server, threadId, 10)).toBe(10);
    const identityRetry = await http(server.url, "POST", artifactsPath(threadId), {
      artifactType: "plan",
      identityKey: "plan:main",
      payload: { steps: ["a", "b", "c"] },
    });
    expect(identityRetry.status).toBe(200);
    const identityConflict = await http(server.url, "POST", artifactsPath(threadId), {
      artifactType: "plan",
      identityKey: "plan:main",
      payload: { steps: [] },
    });
    expect(identityConflict.status).toBe(409);
    expect(identityConflict.json.code).toBe("identity_conflict");
    const stale = await http(server.url, "PATCH", `${artifactsPath(threadId)}/${identityRetry.json.artifact.id}`, {
      payload: 1,
    }, { "if-match": '"1"' });
    expect(stale.status).toBe(412);
    expect(stale.json.code).toBe("version_conflict");

    expect(committedSeqs(rolloutDir, threadId)).toEqual(range(10));
    const patches = await readRollout(rolloutDir, threadId);
    const truth = materialize(null, patches)!;
    expect(truth.artifacts.map((a) => a.artifactType)).toEqual(["plan", "file", "note", "note", "note"]);
    expect(truth.artifacts[0]).toMatchObject({ version: 3, payload: { steps: ["a", "b", "c"] } });

    for (const query of ["", "?consistency=cache", "?consistency=strong&minSeq=10"]) {
      const read = await http(server.url, "GET", `/v1/threads/${threadId}${query}`);
      expect(read.status).toBe(200);
      expect(read.headers.get("x-artifacts-source")).toBe("rollout");
      expect(read.headers.get("etag")).toBe('"10"');
      expect(read.json).toEqual({ thread: threadView(truth) });
    }
    const one = await http(server.url, "GET", `${artifactsPath(threadId)}/${truth.artifacts[1]!.id}`);
    expect(one.status).toBe(200);
    expect(one.headers.get("x-artifacts-source")).toBe("rollout");
    expect(one.json).toEqual({ artifact: truth.artifacts[1] });
    expect((await http(server.url, "GET", `/v1/threads/${threadId}?minSeq=11`)).status).toBe(404);
    expect((await http(server.url, "GET", "/v1/threads/never-written")).status).toBe(404);

    // Compaction ran from the rollout alone while the cache was down, and its base is right.
    const rollout = new Rollout(new FsBlobStore(rolloutDir));
    const compactedTo = await waitFor("compaction up to seq 9", async () => {
      const seq = (await rollout.compaction.readPointer("local", threadId))?.seq ?? 0;
      return seq >= 9 ? seq : undefined;
    });
    const { base, tail } = await rollout.loadParts("local", threadId);
    expect(base).toEqual(materialize(null, patches.slice(0, compactedTo)));
    expect(materialize(base, patchesOf(tail))).toEqual(truth);
  });
});

describe("a cache that missed writes made by another process", () => {
  it("is repaired by the next strong read, and by the next write (put-if-absent conflict)", async () => {
    const { dir, rolloutDir, dbPath } = cluster.dataDir();
    const [a, b] = (await cluster.startMany([
      { DATA_DIR: dir },
      // Same rollout folder, no reachable cache: its writes never reach A's libSQL file.
      { DATA_DIR: dir, BLOB_STORE: `fs:${rolloutDir}`, LIBSQL_URL: deadLibsqlUrl },
    ])) as [ServerProcess, ServerProcess];
    expect((await http(b.url, "GET", "/healthz")).json).toMatchObject({ cache: "down", rollout: "up" });
    const threadId = "shared";

    const a1 = await create(a, threadId, { artifactType: "plan", identityKey: "p", payload: { v: 1 } });
    const a2 = await create(a, threadId, { artifactType: "note", payload: "kept" });
    expect([a1.seq, a2.seq]).toEqual([1, 2]);

    // B writes on top: a create, an update of A's artifact, a remove of A's other one.
    const b1 = await create(b, threadId, { artifactType: "note", payload: "from B" });
    expect(b1.seq).toBe(3);
    expect((await update(b, threadId, a1.id, { v: 2 })).seq).toBe(4);
    expect(await remove(b, threadId, a2.id)).toBe(5);
    const bRead = await http(b.url, "GET", `/v1/threads/${threadId}`);
    expect(bRead.headers.get("x-artifacts-source")).toBe("rollout");
    expect(bRead.json.thread.rolloutSeq).toBe(5);

    // A's cache really missed them: a cache-only read still answers seq 2.
    const staleRead = await http(a.url, "GET", `/v1/threads/${threadId}?consistency=cache`);
    expect(staleRead.headers.get("x-artifacts-source")).toBe("cache");
    expect(staleRead.json.thread.rolloutSeq).toBe(2);
    expect((await readCacheFile(dbPath, threadId)).thread?.seq).toBe(2);

    const strong = await http(a.url, "GET", `/v1/threads/${threadId}`);
    expect(strong.status).toBe(200);
    expect(strong.headers.get("x-artifacts-source")).toBe("repaired");
    const truth5 = await replay(rolloutDir, threadId);
    expect(truth5.seq).toBe(5);
    expect(strong.json).toEqual({ thread: threadView(truth5) });
    expect(strong.json).toEqual(bRead.json);
    expect(strong.json.thread.artifacts.map((x: Artifact) => [x.id, x.version])).toEqual([
      [a1.id, 2],
      [b1.id, 1],
    ]);

    const cached = await http(a.url, "GET", `/v1/threads/${threadId}?consistency=cache`);
    expect(cached.headers.get("x-artifacts-source")).toBe("cache");
    expect(cached.json).toEqual(strong.json);
    expect(await readCacheFile(dbPath, threadId)).toEqual(expectedCacheRows(await readRollout(rolloutDir, threadId)));

    // B writes again; A's cache is behind once more, and A WRITES next (no read in between):
    // A tries seq 6 on its stale cache, loses put-if-absent, catches up, and lands on 8.
    expect((await create(b, threadId, { artifactType: "note", payload: "B again" })).seq).toBe(6);
    expect((await update(b, threadId, b1.id, "from B, edited")).seq).toBe(7);
    expect((await readCacheFile(dbPath, threadId)).thread?.seq).toBe(5);
    const a3 = await create(a, threadId, { artifactType: "note", payload: "from A" });
    expect(a3.seq).toBe(8);
    expect(committedSeqs(rolloutDir, threadId)).toEqual(range(8));
    const patches = await readRollout(rolloutDir, threadId);
    expect(patches.map((p) => p.op)).toEqual(["add", "add", "add", "update", "remove", "add", "update", "add"]);
    expect(patches[7]?.artifact).toEqual(a3);

    const truth8 = await replay(rolloutDir, threadId);
    const afterWrite = await http(a.url, "GET", `/v1/threads/${threadId}?consistency=cache`);
    expect(afterWrite.headers.get("x-artifacts-source")).toBe("cache");
    expect(afterWrite.json).toEqual({ thread: threadView(truth8) });
    expect(await readCacheFile(dbPath, threadId)).toEqual(expectedCacheRows(patches));
  });

  it("writes that append nothing (refusals, idempotent creates) are not decided on a cache that missed writes", async () => {
    const { dir, rolloutDir, dbPath } = cluster.dataDir();
    const [a, b] = (await cluster.startMany([
      { DATA_DIR: dir },
      { DATA_DIR: dir, BLOB_STORE: `fs:${rolloutDir}`, LIBSQL_URL: deadLibsqlUrl },
    ])) as [ServerProcess, ServerProcess];

    // A thread only B has written: A's cache has never seen it (not "thread_not_found").
    const fresh = await create(b, "b-only", { artifactType: "note", payload: 1 });
    expect((await update(a, "b-only", fresh.id, 2)).seq).toBe(2);

    const threadId = "stale";
    const plan = await create(a, threadId, { artifactType: "plan", identityKey: "p", payload: { v: 1 } });
    expect((await readCacheFile(dbPath, threadId)).thread?.seq).toBe(1);

    // If-Match on a version only B produced (not 412 version_conflict).
    expect((await update(b, threadId, plan.id, { v: 2 })).version).toBe(2);
    expect(await update(a, threadId, plan.id, { v: 3 }, 2)).toMatchObject({ seq: 3, version: 3 });

    // An artifact only B created (not 404 artifact_not_found).
    const other = await create(b, threadId, { artifactType: "note", identityKey: "n", payload: "x" });
    expect(await update(a, threadId, other.id, "y")).toMatchObject({ seq: 5, version: 2 });

    // The idempotent retry of an identity whose payload B changed (not 409 identity_conflict)...
    const planV4 = await update(b, threadId, plan.id, { v: 4 });
    const retry = await http(a.url, "POST", artifactsPath(threadId), {
      artifactType: "plan",
      identityKey: "p",
      payload: { v: 4 },
    });
    expect(retry.status, retry.text).toBe(200);
    expect(retry.json).toEqual({ artifact: planV4, thread: { id: threadId, rolloutSeq: 6 } });

    // ...and the converse: what A's cache still holds as equal is a conflict at the head (not a stale 200).
    expect((await update(b, threadId, plan.id, { v: 5 })).seq).toBe(7);
    const conflict = await http(a.url, "POST", artifactsPath(threadId), {
      artifactType: "plan",
      identityKey: "p",
      payload: { v: 4 },
    });
    expect(conflict.status, conflict.text).toBe(409);
    expect(conflict.json.code).toBe("identity_conflict");

    // Removed by B: A answers 404 and appends nothing.
    expect(await remove(b, threadId, other.id)).toBe(8);
    const gone = await http(a.url, "PATCH", `${artifactsPath(threadId)}/${other.id}`, { payload: "z" });
    expect(gone.status).toBe(404);
    expect(gone.json.code).toBe("artifact_not_found");

    expect(committedSeqs(rolloutDir, threadId)).toEqual(range(8));
    expect(await readCacheFile(dbPath, threadId)).toEqual(expectedCacheRows(await readRollout(rolloutDir, threadId)));
    const read = await http(a.url, "GET", `/v1/threads/${threadId}?consistency=cache`);
    expect(read.json).toEqual({ thread: threadView(await replay(rolloutDir, threadId)) });
  });

  it("minSeq: a write on B (cache down) is visible on A with minSeq = B's rolloutSeq", async () => {
    const { dir, rolloutDir } = cluster.dataDir();
    const [a, b] = (await cluster.startMany([
      { DATA_DIR: dir },
      { DATA_DIR: dir, BLOB_STORE: `fs:${rolloutDir}`, LIBSQL_URL: deadLibsqlUrl },
    ])) as [ServerProcess, ServerProcess];
    const threadId = "ryw";

    // A knows the thread at seq 1, so its cache has a row that B's writes leave behind.
    await create(a, threadId, { artifactType: "note", payload: "a" });
    for (const i of range(3)) {
      const written = await http(b.url, "POST", artifactsPath(threadId), { artifactType: "note", payload: { b: i } });
      expect(written.status).toBe(201);
      const minSeq = written.json.thread.rolloutSeq as number;
      expect(minSeq).toBe(i + 1);

      for (const consistency of ["cache", "strong"]) {
        const read = await http(a.url, "GET", `/v1/threads/${threadId}?consistency=${consistency}&minSeq=${minSeq}`);
        expect(read.status, read.text).toBe(200);
        expect(read.json.thread.rolloutSeq).toBeGreaterThanOrEqual(minSeq);
        expect(read.json.thread.artifacts.map((x: Artifact) => x.id)).toContain(written.json.artifact.id);
        expect(read.json).toEqual({ thread: threadView(await replay(rolloutDir, threadId)) });
      }
    }
    // A seq the rollout does not have yet is a 404, not a stale answer.
    const ahead = await http(a.url, "GET", `/v1/threads/${threadId}?minSeq=5`);
    expect(ahead.status).toBe(404);
    expect(ahead.json.code).toBe("thread_not_found");
  });
});
