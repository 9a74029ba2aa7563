/**
 * DESIGN.md guarantees 2 and 3 with real processes: three Node servers share one
 * DATA_DIR (one libSQL file, one rollout folder) and hammer ONE thread at once.
 * Every acknowledged write must own exactly one seq, seqs must be 1..N without a
 * gap or a duplicate, the folder must hold exactly those N patches, and the libSQL
 * cache must equal a replay of the rollout (rows, order, versions, payloads, events).
 */
import { describe, expect, it } from "vitest";
import type { Artifact } from "../../src/model/artifact.ts";
import type { ServerProcess } from "../support/server-process.ts";
import {
  committedSeqs,
  expectedCacheRows,
  http,
  type HttpResult,
  range,
  readCacheFile,
  readRollout,
  replay,
  threadView,
  useCluster,
} from "../support/cluster.ts";
import { waitFor } from "../support/wait.ts";

const PROCESSES = 3;
const CREATES_PER_PROCESS = 20;
/** COMPACT_EVERY small so compaction races with commits too. */
const ENV = { COMPACT_EVERY: "7" };

const cluster = useCluster();

/** Fires every request before awaiting any of them. */
function fireAll<T>(jobs: (() => Promise<T>)[]): Promise<T[]> {
  return Promise.all(jobs.map((job) => job()));
}

function describeFailures(results: HttpResult[], ok: (r: HttpResult) => boolean): string {
  return results
    .filter((r) => !ok(r))
    .map((r) => `${r.status} ${r.text}`)
    .join("\n");
}

/** Whether any server reported a failed libSQL call (and so served or decided from the rollout). */
function reportedCacheFailure(): boolean {
  return cluster.outputs().some((output) => /cache \w+ failed; using the rollout/.test(output));
}

/**
 * A `consistency=cache` read served by the cache at seq n. The writers keep the cache in
 * step, so it is at once; the one excuse is a libSQL call that failed (on a loaded
 * machine one can outlast the 5 s call or busy timeout), which the server reports, and
 * then the cache must still catch up by itself (the healer, within a second or two).
 */
async function cacheReadInStep(server: ServerProcess, threadId: string, n: number): Promise<HttpResult> {
  const read = () => http(server.url, "GET", `/v1/threads/${threadId}?consistency=cache`);
  const inStep = (r: HttpResult) =>
    r.status === 200 && r.headers.get("x-artifacts-source") === "cache" && r.headers.get("etag") === `"${n}"`;
  const first = await read();
  if (inStep(first)) return first;
  expect(reportedCacheFailure(), `cache behind (${first.headers.get("etag")}) without a reported failure`).toBe(true);
  return await waitFor(`the cache to catch up with seq ${n}`, async () => {
    const again = await read();
    if (!inStep(again)) {
      throw new Error(`still ${again.headers.get("x-artifacts-source")} at ${again.headers.get("etag")}`);
    }
    return again;
  }, { timeoutMs: 15_000, intervalMs: 200 });
}

/** The cache, seen both through the API (consistency=cache) and straight from the file, equals a replay of the rollout. */
async function expectCacheEqualsReplay(
  server: ServerProcess,
  rolloutDir: string,
  dbPath: string,
  threadId: string,
  n: number,
) {
  const patches = await readRollout(rolloutDir, threadId);
  expect(patches.map((p) => p.seq)).toEqual(range(n));
  const truth = await replay(rolloutDir, threadId);
  expect(truth.seq).toBe(n);

  const cached = await cacheReadInStep(server, threadId, n);
  expect(cached.json).toEqual({ thread: threadView(truth) });

  // The rows themselves, including the event log the live stream reads: one event per patch, 1..N.
  expect(await readCacheFile(dbPath, threadId)).toEqual(expectedCacheRows(patches));

  // A strong read finds nothing missing, so it is served from the cache unchanged.
  const strong = await http(server.url, "GET", `/v1/threads/${threadId}`);
  expect(strong.status).toBe(200);
  expect(strong.headers.get("x-artifacts-source")).toBe("cache");
  expect(strong.json).toEqual({ thread: threadView(truth) });
  return truth;
}

describe("many writers on one thread across processes", () => {
  it(`${PROCESSES} processes x ${CREATES_PER_PROCESS} concurrent creates: seqs 1..N, no loss, no duplicate, cache = replay`, async () => {
    const { rolloutDir, dbPath, servers } = await cluster.shared(PROCESSES, ENV);
    const threadId = "shared-thread";
    const n = PROCESSES * CREATES_PER_PROCESS;

    const jobs = servers.flatMap((server, p) =>
      range(CREATES_PER_PROCESS).map((i) => () =>
        http(server.url, "POST", `/v1/threads/${threadId}/artifacts`, {
          artifactType: "note",
          payload: { process: p, i, text: `p${p}-${i}` },
        })
      )
    );
    const results = await fireAll(jobs);

    expect(describeFailures(results, (r) => r.status === 201)).toBe("");
    const artifacts = results.map((r) => r.json.artifact as Artifact);
    const seqs = artifacts.map((a) => a.seq).sort((a, b) => a - b);
    expect(seqs).toEqual(range(n));
    // The thread's rolloutSeq in each response is the seq of that write's own patch.
    for (const r of results) expect(r.json.thread).toEqual({ id: threadId, rolloutSeq: r.json.artifact.seq });
    expect(new Set(artifacts.map((a) => a.id)).size).toBe(n);
    for (const r of results) {
      expect(r.headers.get("location")).toBe(`/v1/threads/${threadId}/artifacts/${r.json.artifact.id}`);
    }

    expect(committedSeqs(rolloutDir, threadId)).toEqual(range(n));
    const patches = await readRollout(rolloutDir, threadId);
    // Each acknowledged artifact is exactly the one its patch holds (nothing overwritten).
    const bySeq = new Map(patches.map((p) => [p.seq, p]));
    for (const artifact of artifacts) {
      expect(bySeq.get(artifact.seq)).toMatchObject({ op: "add", artifact });
    }

    // Every process sees the same truth, from the shared cache.
    for (const server of servers) {
      const truth = await expectCacheEqualsReplay(server, rolloutDir, dbPath, threadId, n);
      expect(truth.artifacts).toHaveLength(n);
      // Creation order is seq order.
      expect(truth.artifacts.map((a) => a.seq)).toEqual(range(n));
      expect(truth.artifacts.every((a) => a.version === 1)).toBe(true);
    }
  });

  it("a concurrent mix of creates, updates and removes across processes: seqs contiguous, cache = replay", async () => {
    const { rolloutDir, dbPath, servers } = await cluster.shared(PROCESSES, ENV);
    const threadId = "mixed-thread";

    // Seed: 12 artifacts, created one at a time across the processes.
    const SEED = 12;
    const seeded: Artifact[] = [];
    for (const i of range(SEED)) {
      const server = servers[i % PROCESSES] as ServerProcess;
      const r = await http(server.url, "POST", `/v1/threads/${threadId}/artifacts`, {
        artifactType: "doc",
        payload: { seed: i },
      });
      expect(r.status).toBe(201);
      seeded.push(r.json.artifact);
    }
    expect(seeded.map((a) => a.seq)).toEqual(range(SEED));

    // Artifacts 0..5 get updated (from every process), 6..9 get removed, 10..11 stay untouched.
    const toUpdate = seeded.slice(0, 6);
    const toRemove = seeded.slice(6, 10);
    const UPDATES_PER_ARTIFACT_PER_PROCESS = 2;
    const CREATES = 8;

    type Job = { kind: "create" | "update" | "remove"; run: () => Promise<HttpResult> };
    const jobs: Job[] = [];
    servers.forEach((server, p) => {
      for (const i of range(CREATES)) {
        jobs.push({
          kind: "create",
          run: () =>
            http(server.url, "POST", `/v1/threads/${threadId}/artifacts`, {
              artifactType: "doc",
              payload: { process: p, created: i },
            }),
        });
      }
      for (const target of toUpdate) {
        for (const u of range(UPDATES_PER_ARTIFACT_PER_PROCESS)) {
          jobs.push({
            kind: "update",
            run: () =>
              http(server.url, "PATCH", `/v1/threads/${threadId}/artifacts/${target.id}`, {
                payload: { process: p, update: u, of: target.id },
              }),
          });
        }
      }
    });
    toRemove.forEach((target, i) => {
      const server = servers[i % PROCESSES] as ServerProcess;
      jobs.push({
        kind: "remove",
        run: () => http(server.url, "DELETE", `/v1/threads/${threadId}/artifacts/${target.id}`),
      });
    });
    // Interleave kinds so each process has creates, updates and removes in flight together.
    jobs.sort((a, b) => (a.kind === b.kind ? 0 : a.kind < b.kind ? -1 : 1));
    const interleaved = jobs.map((_, i) => jobs[(i * 7) % jobs.length] as Job);
    expect(new Set(interleaved).size).toBe(jobs.length); // 7 is coprime with the job count

    const results = await fireAll(interleaved.map((j) => j.run));
    const kinds = interleaved.map((j) => j.kind);
    const bad = results.filter((r, i) => r.status !== (kinds[i] === "create" ? 201 : 200));
    expect(bad.map((r) => `${r.status} ${r.text}`)).toEqual([]);

    const writeSeqs = results.map((r, i) =>
      (kinds[i] === "remove" ? r.json.removed.seq : r.json.artifact.seq) as number
    );
    results.forEach((r, i) => expect(r.json.thread.rolloutSeq).toBe(writeSeqs[i]));
    const n = SEED + jobs.length;
    expect([...writeSeqs].sort((a, b) => a - b)).toEqual(range(jobs.length, SEED + 1));
    expect(committedSeqs(rolloutDir, threadId)).toEqual(range(n));

    const patches = await readRollout(rolloutDir, threadId);
    const ops = patches.slice(SEED).map((p) => p.op);
    expect(ops.filter((op) => op === "add")).toHaveLength(PROCESSES * CREATES);
    expect(ops.filter((op) => op === "update")).toHaveLength(
      PROCESSES * toUpdate.length * UPDATES_PER_ARTIFACT_PER_PROCESS,
    );
    expect(ops.filter((op) => op === "remove")).toHaveLength(toRemove.length);

    const truth = await expectCacheEqualsReplay(servers[0] as ServerProcess, rolloutDir, dbPath, threadId, n);
    for (const server of servers.slice(1)) {
      const cached = await http(server.url, "GET", `/v1/threads/${threadId}?consistency=cache`);
      expect(cached.json).toEqual({ thread: threadView(truth) });
    }

    // The replay itself says what the writes said.
    const byId = new Map(truth.artifacts.map((a) => [a.id, a]));
    for (const removed of toRemove) expect(byId.has(removed.id)).toBe(false);
    for (const kept of seeded.slice(10)) expect(byId.get(kept.id)).toEqual(kept);
    for (const target of toUpdate) {
      const updates = results.filter((r, i) => kinds[i] === "update" && r.json.artifact.id === target.id);
      expect(updates).toHaveLength(PROCESSES * UPDATES_PER_ARTIFACT_PER_PROCESS);
      // Versions 2..k+1, each exactly once, in seq order; the last one is what is stored.
      const sorted = updates.map((r) => r.json.artifact as Artifact).sort((a, b) => a.seq - b.seq);
      expect(sorted.map((a) => a.version)).toEqual(range(updates.length, 2));
      const last = sorted[sorted.length - 1] as Artifact;
      expect(byId.get(target.id)).toEqual(last);
      expect(last.createdAt).toBe(target.createdAt);
    }
    const createdIds = results.filter((_, i) => kinds[i] === "create").map((r) => r.json.artifact.id as string);
    expect(new Set(createdIds).size).toBe(PROCESSES * CREATES);
    for (const id of createdIds) expect(byId.has(id)).toBe(true);
    // Creation order survives updates and removes: the seeded survivors first, then the new ones by seq.
    const expectedOrder = [
      ...seeded.filter((a) => !toRemove.includes(a)).map((a) => a.id),
      ...results
        .filter((_, i) => kinds[i] === "create")
        .map((r) => r.json.artifact as Artifact)
        .sort((a, b) => a.seq - b.seq)
        .map((a) => a.id),
    ];
    expect(truth.artifacts.map((a) => a.id)).toEqual(expectedOrder);
    expect(truth.artifacts).toHaveLength(SEED - toRemove.length + PROCESSES * CREATES);
  });
});
