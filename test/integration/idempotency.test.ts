/**
 * API.md "Idempotency-Key" with real processes: the key lives in the rollout (on the
 * patch of the write it answered), so it holds across processes sharing a store, a lost
 * libSQL file (the snapshot keeps it), and a cache that cannot be reached at all.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  closedPort,
  committedSeqs,
  deleteCacheFile,
  expectedCacheRows,
  http,
  type HttpResult,
  range,
  readCacheFile,
  readRollout,
  snapshotFiles,
  TENANT,
  useCluster,
} from "../support/cluster.ts";

const cluster = useCluster();

let deadLibsqlUrl: string;
beforeAll(async () => {
  deadLibsqlUrl = `http://127.0.0.1:${await closedPort()}`;
});

const answerOf = (r: HttpResult) => ({ status: r.status, json: r.json as unknown });

function keyedCreate(base: string, threadId: string, key: string, payload: unknown): Promise<HttpResult> {
  return http(base, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "note", payload }, {
    "idempotency-key": key,
  });
}

describe("Idempotency-Key across processes and lost caches", () => {
  it("three processes on one store, each sent every keyed create at once: one artifact per key", async () => {
    const { servers, rolloutDir, dbPath } = await cluster.shared(3);
    const threadId = "idem-shared";
    const keys = range(12).map((i) => `key-${i}`);
    // Every key to every process at once, each process's requests interleaved with the others'.
    const answers = await Promise.all(
      keys.flatMap((key, i) => servers.map((server) => keyedCreate(server.url, threadId, key, { i }))),
    );
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 201));
    for (const [i] of keys.entries()) {
      const mine = answers.slice(i * servers.length, (i + 1) * servers.length).map(answerOf);
      expect(mine.every((a) => JSON.stringify(a) === JSON.stringify(mine[0]))).toBe(true);
    }
    // The rollout: exactly one patch per key, carrying it, seqs 1..12 with no gap.
    const patches = await readRollout(rolloutDir, threadId);
    expect(committedSeqs(rolloutDir, threadId).at(-1)).toBe(keys.length);
    expect(patches.map((p) => p.idempotency?.key).sort()).toEqual([...keys].sort());
    const ids = new Set(answers.map((a) => a.json.artifact.id));
    expect([...ids].sort()).toEqual(patches.map((p) => p.artifact.id).sort());
    // And the shared cache equals a replay.
    const rows = await readCacheFile(dbPath, threadId);
    expect(rows.artifacts).toEqual(expectedCacheRows(patches).artifacts);
  });

  it("the libSQL file is lost after compaction made a snapshot: the key is still honoured", async () => {
    const { dir, rolloutDir, dbPath } = cluster.dataDir();
    const env = { DATA_DIR: dir, COMPACT_EVERY: "3" };
    const threadId = "idem-snapshot";
    const first = await cluster.start(env);
    const created = await keyedCreate(first.url, threadId, "first-write", { n: 0 });
    expect(created.status).toBe(201);
    const id = created.json.artifact.id as string;
    for (const n of range(8)) {
      const r = await http(first.url, "PATCH", `/v1/threads/${threadId}/artifacts/${id}`, { payload: { n } });
      expect(r.status).toBe(200);
    }
    await first.stop();
    // A snapshot past the key's seq holds it (the cold load starts there, not at commit 1).
    const snapshots = snapshotFiles(rolloutDir, threadId);
    expect(snapshots.length).toBeGreaterThan(0);
    const snapshotDir = join(rolloutDir, "tenants", TENANT, "threads", threadId, "snapshots");
    const snapshot = JSON.parse(readFileSync(join(snapshotDir, snapshots.at(-1) as string), "utf8"));
    expect(snapshot.seq).toBeGreaterThan(1);
    expect(snapshot.recentKeys).toEqual([expect.objectContaining({ key: "first-write", seq: 1 })]);

    deleteCacheFile(dbPath);
    const second = await cluster.start(env);
    const again = await keyedCreate(second.url, threadId, "first-write", { n: 0 });
    expect(answerOf(again)).toEqual(answerOf(created));
    expect(committedSeqs(rolloutDir, threadId)).toEqual(range(9));
    const reused = await keyedCreate(second.url, threadId, "first-write", { n: 1 });
    expect(reused.status).toBe(422);
    expect(reused.json.code).toBe("idempotency_key_reused");
  });

  it("libSQL unreachable: the key is found in the rollout", async () => {
    const { dir, rolloutDir } = cluster.dataDir();
    const withCache = await cluster.start({ DATA_DIR: dir });
    const threadId = "idem-no-cache";
    const created = await keyedCreate(withCache.url, threadId, "k", { n: 0 });
    expect(created.status).toBe(201);
    await withCache.stop();
    const without = await cluster.start({ DATA_DIR: dir, LIBSQL_URL: deadLibsqlUrl });
    const again = await keyedCreate(without.url, threadId, "k", { n: 0 });
    expect(answerOf(again)).toEqual(answerOf(created));
    // A new key still writes, on the rollout alone.
    expect((await keyedCreate(without.url, threadId, "k2", { n: 0 })).status).toBe(201);
    expect(committedSeqs(rolloutDir, threadId)).toEqual(range(2));
  });
});
