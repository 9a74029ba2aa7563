/**
 * Deleting a thread with real processes on one DATA_DIR (the fs rollout, a libSQL file):
 * - a delete interrupted between its tombstone and its sweep (the state `kill -9` leaves:
 *   the delete commit durable, nothing marked, nothing removed, the cache not told) is
 *   finished by the next read of the thread, and by `npm run rebuild`; so is one killed
 *   mid-sweep (life marked, some old commits stubbed);
 * - a lost cache (kill -9, the libSQL files deleted) never restarts a deleted thread at 1;
 * - three processes writing one thread while a fourth deletes it: every acknowledged
 *   write landed before the delete (and is gone) or after it (the new life); nothing of
 *   the old life resurrects; afterwards the thread's folder holds stubs below the
 *   tombstone (keys occupied, no content), the tombstone and the new life.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import { commitOf } from "../../src/model/patch.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { deleteCacheFile, http, range, useCluster } from "../support/cluster.ts";
import { runRebuildProcess } from "../support/ops.ts";
import { waitFor } from "../support/wait.ts";

const cluster = useCluster();

/** Every file under the thread's rollout folder, relative to it, sorted. */
function threadFiles(rolloutDir: string, threadId: string): string[] {
  const root = join(rolloutDir, "tenants", "local", "threads", threadId);
  const files: string[] = [];
  const walk = (dir: string) => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else files.push(relative(root, path));
    }
  };
  walk(root);
  return files.sort();
}

const seqName = (seq: number) => `${String(seq).padStart(12, "0")}.json`;

/**
 * The thread's files once every life before the one starting at `tombstone` is swept:
 * its commits below the tombstone are stubs that tile seqs 1..tombstone-1 and hold no
 * user data (their keys stay occupied), no compaction object of theirs is left; or
 * undefined while that is not so yet.
 */
function sweptBelow(rolloutDir: string, threadId: string, tombstone: number): string[] | undefined {
  const root = join(rolloutDir, "tenants", "local", "threads", threadId);
  const files = threadFiles(rolloutDir, threadId);
  let next = 1;
  for (const file of files) {
    const commit = /^commits\/(\d{12})\.json$/.exec(file);
    const derived = /^(?:deltas|snapshots)\/(\d{12})/.exec(file);
    if (derived && Number(derived[1]) < tombstone) return undefined;
    if (!commit || Number(commit[1]) >= tombstone) continue;
    const stored = JSON.parse(readFileSync(join(root, file), "utf8"));
    if (!("tombstone" in stored)) return undefined;
    expect(stored).toEqual({ v: 2, firstSeq: next, lastSeq: stored.lastSeq, tombstone });
    next = stored.lastSeq + 1;
  }
  expect(next).toBe(tombstone);
  return files;
}

/** The tombstone a killed process leaves: the delete commit in place, and nothing else done. */
async function leaveTombstone(rolloutDir: string, threadId: string, seq: number): Promise<void> {
  const rollout = new Rollout(new FsBlobStore(rolloutDir));
  const at = new Date().toISOString();
  expect(await rollout.append("local", commitOf([{ seq, threadId, at, op: "delete" }]))).toBe("created");
}

async function writeThread(url: string, threadId: string, n: number): Promise<void> {
  for (const i of range(n)) {
    const created = await http(url, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "n", payload: i });
    expect(created.status).toBe(201);
  }
}

describe("a delete interrupted midway", () => {
  it("between the tombstone and the sweep: the next read finishes it", async () => {
    const { dir, rolloutDir } = cluster.dataDir();
    const env = { DATA_DIR: dir, COMPACT_EVERY: "4" };
    const first = await cluster.start(env);
    await writeThread(first.url, "doomed", 10);
    // Compaction objects exist: they are part of what the sweep removes. Compaction runs
    // after the answer, so the last 201 may come before its objects are written.
    await waitFor(
      "the thread's compaction objects",
      () => threadFiles(rolloutDir, "doomed").some((f) => f.startsWith("deltas/")),
    );
    await first.kill();
    await leaveTombstone(rolloutDir, "doomed", 11);

    const second = await cluster.start(env);
    // The cache still holds the old life; the strong read finds the tombstone after it.
    const read = await http(second.url, "GET", "/v1/threads/doomed");
    expect(read.status).toBe(404);
    const left = await waitFor("the sweep the read started", async () => sweptBelow(rolloutDir, "doomed", 11));
    // Every key stays occupied (ten stubs and the tombstone); the content is gone.
    expect(left).toEqual([...range(11).map((seq) => `commits/${seqName(seq)}`), "life.json"]);
    // And the thread starts its next life after the tombstone.
    const next = await http(second.url, "POST", "/v1/threads/doomed/artifacts", { artifactType: "n", payload: "new" });
    expect(next.json.artifact.seq).toBe(12);
  });

  it("before or during the sweep: npm run rebuild finishes it", async () => {
    const { dir, rolloutDir } = cluster.dataDir();
    const env = { DATA_DIR: dir, COMPACT_EVERY: "4" };
    const server = await cluster.start(env);
    await writeThread(server.url, "unswept", 9);
    await writeThread(server.url, "half-swept", 9);
    await writeThread(server.url, "kept", 3);
    await server.kill();
    await leaveTombstone(rolloutDir, "unswept", 10);
    // Killed mid-sweep: the life marked, the compaction objects and a few commits already gone.
    await leaveTombstone(rolloutDir, "half-swept", 10);
    const store = new FsBlobStore(rolloutDir);
    const rollout = new Rollout(store);
    await rollout.writeLife("local", "half-swept", { lifeStart: 10 });
    for (const key of await store.list("tenants/local/threads/half-swept/")) {
      if (/\/(?:deltas|snapshots)\//.test(key) || key.endsWith("compaction.json")) await store.delete(key);
    }
    for (const seq of range(3)) {
      await store.put(
        `tenants/local/threads/half-swept/commits/${seqName(seq)}`,
        JSON.stringify({ v: 2, firstSeq: seq, lastSeq: seq, tombstone: 10 }),
      );
    }

    const run = await runRebuildProcess({ DATA_DIR: dir });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/objects? of deleted threads removed/);
    for (const threadId of ["unswept", "half-swept"]) {
      expect(sweptBelow(rolloutDir, threadId, 10)).toEqual([
        ...range(10).map((seq) => `commits/${seqName(seq)}`),
        "life.json",
      ]);
    }
    expect(threadFiles(rolloutDir, "kept").filter((f) => f.startsWith("commits/"))).toHaveLength(3);

    const restarted = await cluster.start(env);
    for (const threadId of ["unswept", "half-swept"]) {
      expect((await http(restarted.url, "GET", `/v1/threads/${threadId}`)).status).toBe(404);
      expect((await http(restarted.url, "GET", `/v1/threads/${threadId}?consistency=cache`)).status).toBe(404);
    }
    expect((await http(restarted.url, "GET", "/v1/threads/kept")).json.thread.rolloutSeq).toBe(3);
    const listed = await http(restarted.url, "GET", "/v1/threads");
    expect(listed.json.threads.map((t: { id: string }) => t.id)).toEqual(["kept"]);
  });
});

describe("a lost cache after a delete", () => {
  it("never restarts the thread: a write after kill -9 and the libSQL files deleted goes on in the current life", async () => {
    const { dir, rolloutDir, dbPath } = cluster.dataDir();
    const env = { DATA_DIR: dir };
    const first = await cluster.start(env);
    const post = (url: string, payload: string) =>
      http(url, "POST", "/v1/threads/t/artifacts", { artifactType: "n", payload });
    expect((await post(first.url, "a")).json.artifact.seq).toBe(1);
    expect((await post(first.url, "b")).json.artifact.seq).toBe(2);
    expect((await http(first.url, "DELETE", "/v1/threads/t")).json.deleted.seq).toBe(3);
    const c = await post(first.url, "c");
    expect(c.json.artifact.seq).toBe(4);
    await waitFor("the sweep", async () => sweptBelow(rolloutDir, "t", 3));
    await first.kill();
    deleteCacheFile(dbPath);

    const second = await cluster.start(env);
    const d = await post(second.url, "d");
    expect(d.status).toBe(201);
    expect(d.json.artifact.seq).toBe(5);
    const read = await http(second.url, "GET", "/v1/threads/t");
    expect(read.json.thread.rolloutSeq).toBe(5);
    expect(read.json.thread.artifacts.map((a: { payload: string }) => a.payload)).toEqual(["c", "d"]);
    expect(read.json.thread.artifacts[0]).toEqual(c.json.artifact);
    // One life after the other in one key space: stubs 1-2, the tombstone, then c and d.
    expect(sweptBelow(rolloutDir, "t", 3)).toEqual([...range(5).map((seq) => `commits/${seqName(seq)}`), "life.json"]);
    const run = await runRebuildProcess(env);
    expect(run.code, run.stderr).toBe(0);
    expect((await http(second.url, "GET", "/v1/threads/t?consistency=cache")).json.thread).toEqual(read.json.thread);
  });
});

describe("writers racing a delete across processes", () => {
  it("3 processes write while a 4th deletes: each write lands before the delete or after it; nothing of the old life is left", async () => {
    const { rolloutDir, servers } = await cluster.shared(4, { COMPACT_EVERY: "5" }, { warm: false });
    const [deleter, ...writers] = servers;
    const threadId = "contested";
    // The thread exists before the race.
    await writeThread(deleter.url, threadId, 3);

    const acks: Array<{ seq: number; id: string; payload: string }> = [];
    const refusals: string[] = [];
    let deleted: { seq: number } | undefined;
    const writes = writers.flatMap((server, p) =>
      range(15).map(async (i) => {
        const r = await http(server.url, "POST", `/v1/threads/${threadId}/artifacts`, {
          artifactType: "n",
          payload: `p${p}-${i}`,
        });
        if (r.status === 201) acks.push({ seq: r.json.artifact.seq, id: r.json.artifact.id, payload: `p${p}-${i}` });
        else refusals.push(`${r.status} ${r.text}`);
        // The delete goes out once a few writes are in, while the rest are in flight.
        if (acks.length === 6 && !deleted) {
          const d = await http(deleter.url, "DELETE", `/v1/threads/${threadId}`);
          expect(d.status).toBe(200);
          deleted = d.json.deleted;
        }
      })
    );
    await Promise.all(writes);
    // And writes sent once the delete was answered: they can only land in the new life.
    for (const [p, server] of writers.entries()) {
      for (const i of range(2)) {
        const r = await http(server.url, "POST", `/v1/threads/${threadId}/artifacts`, {
          artifactType: "n",
          payload: `late-${p}-${i}`,
        });
        expect(r.status).toBe(201);
        acks.push({ seq: r.json.artifact.seq, id: r.json.artifact.id, payload: `late-${p}-${i}` });
      }
    }
    expect(refusals.filter((r) => !r.startsWith("503"))).toEqual([]);
    const tombstone = (deleted as { seq: number }).seq;
    const before = acks.filter((a) => a.seq < tombstone);
    const after = acks.filter((a) => a.seq > tombstone);
    expect(before.length + after.length).toBe(acks.length);
    expect(before.length).toBeGreaterThanOrEqual(6);
    expect(after.filter((a) => a.payload.startsWith("late-"))).toHaveLength(6);
    // Seqs are unique: before the tombstone, 1..tombstone-1; after, contiguous from tombstone + 1.
    expect(new Set(acks.map((a) => a.seq)).size).toBe(acks.length);
    expect(after.map((a) => a.seq).sort((x, y) => x - y)).toEqual(range(after.length, tombstone + 1));

    // Every process sees the same new life: exactly the writes acknowledged after the delete.
    for (const server of servers) {
      const read = await http(server.url, "GET", `/v1/threads/${threadId}`);
      if (after.length === 0) {
        expect(read.status).toBe(404);
        continue;
      }
      expect(read.status).toBe(200);
      expect(read.json.thread.artifacts.map((a: { id: string }) => a.id).sort()).toEqual(after.map((a) => a.id).sort());
      for (const old of before) {
        expect((await http(server.url, "GET", `/v1/threads/${threadId}/artifacts/${old.id}`)).status).toBe(404);
      }
    }
    // The folder: stubs below the tombstone (keys occupied, content gone), the tombstone
    // and the new life (the sweep started by the delete, finished by now or by the reads above).
    const files = await waitFor("the sweep", async () => sweptBelow(rolloutDir, threadId, tombstone));
    const commits = files.filter((f) => f.startsWith("commits/")).map((f) => Number(f.slice(8, 20)));
    expect(commits.find((seq) => seq >= tombstone)).toBe(tombstone);
    expect(files).toContain("life.json");
  });
});
