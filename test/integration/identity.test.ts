/**
 * DESIGN.md guarantee 5 with real processes: the same (thread, artifactType,
 * identityKey) created concurrently from two processes sharing one DATA_DIR gives
 * exactly one artifact and one patch; every caller learns its id.
 */
import { describe, expect, it } from "vitest";
import type { ServerProcess } from "../support/server-process.ts";
import {
  committedSeqs,
  expectedCacheRows,
  http,
  range,
  readCacheFile,
  readRollout,
  replay,
  threadView,
  useCluster,
} from "../support/cluster.ts";

const CALLERS = 20;

const cluster = useCluster();

describe("concurrent creates with one identity across processes", () => {
  it("give exactly one artifact, one 201, the same id to everyone, one patch; a different payload is 409", async () => {
    const { rolloutDir, dbPath, servers } = await cluster.shared(2);

    const threadId = "identity-thread";
    const path = `/v1/threads/${threadId}/artifacts`;
    // Equal payloads, but not byte-equal: half of the callers send the keys in another order.
    const payloadA = { title: "Main plan", steps: ["a", "b"], meta: { n: 1, ok: true } };
    const payloadB = { meta: { ok: true, n: 1 }, steps: ["a", "b"], title: "Main plan" };
    const results = await Promise.all(
      range(CALLERS).map((i) =>
        http((servers[i % 2] as ServerProcess).url, "POST", path, {
          artifactType: "plan",
          identityKey: "plan:main",
          payload: i % 4 < 2 ? payloadA : payloadB,
        })
      ),
    );

    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s !== 200 && s !== 201), results.map((r) => r.text).join("\n")).toEqual([]);
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    const ids = new Set(results.map((r) => r.json.artifact.id));
    expect(ids.size).toBe(1);
    const [id] = ids;
    // Every caller gets the one artifact as stored, at seq 1, and a thread at rolloutSeq 1.
    const created = results.find((r) => r.status === 201)!;
    expect(created.headers.get("location")).toBe(`${path}/${id}`);
    for (const r of results) {
      expect(r.json.artifact).toEqual(created.json.artifact);
      expect(r.json.thread).toEqual({ id: threadId, rolloutSeq: 1 });
    }
    for (const r of results.filter((x) => x.status === 200)) expect(r.headers.get("location")).toBeNull();
    expect(created.json.artifact).toMatchObject({
      artifactType: "plan",
      identityKey: "plan:main",
      version: 1,
      seq: 1,
      payload: payloadA,
    });

    expect(committedSeqs(rolloutDir, threadId)).toEqual(range(1));
    const patches = await readRollout(rolloutDir, threadId);
    expect(patches).toHaveLength(1);
    expect(patches[0]).toMatchObject({ seq: 1, op: "add", artifact: created.json.artifact });
    expect(await readCacheFile(dbPath, threadId)).toEqual(expectedCacheRows(patches));
    const truth = await replay(rolloutDir, threadId);
    for (const server of servers) {
      const read = await http(server.url, "GET", `/v1/threads/${threadId}`);
      expect(read.status).toBe(200);
      expect(read.json).toEqual({ thread: threadView(truth) });
      expect(read.json.thread.artifacts).toHaveLength(1);
    }

    // Same identity, different payload: a conflict on either process, and nothing is written.
    for (const server of servers) {
      const conflict = await http(server.url, "POST", path, {
        artifactType: "plan",
        identityKey: "plan:main",
        payload: { ...payloadA, title: "Other" },
      });
      expect(conflict.status).toBe(409);
      expect(conflict.headers.get("content-type")).toMatch(/^application\/problem\+json/);
      expect(conflict.json).toMatchObject({ status: 409, code: "identity_conflict" });
    }
    expect(committedSeqs(rolloutDir, threadId)).toEqual(range(1));
    // A retry with the equal payload is still an idempotent 200 with the same id.
    const retry = await http((servers[1] as ServerProcess).url, "POST", path, {
      artifactType: "plan",
      identityKey: "plan:main",
      payload: payloadB,
    });
    expect(retry.status).toBe(200);
    expect(retry.json.artifact.id).toBe(id);
    expect(committedSeqs(rolloutDir, threadId)).toEqual(range(1));
  });
});
