/**
 * kill -9 in the middle of a write burst: the server dies with requests in flight,
 * patches half-written in its temp folder and libSQL mid-transaction. Restarted on the
 * same DATA_DIR, every write it acknowledged is there at the seq and with the id it
 * answered, the rollout is contiguous from 1, and the cache (after a strong read)
 * equals the replay of the rollout, event log included.
 */
import { describe, expect, it } from "vitest";
import type { Artifact } from "../../src/model/artifact.ts";
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

const cluster = useCluster();

const BURST = 200;
const KILL_AFTER_ACKS = 60;

const THREADS = ["burst-a", "burst-b", "burst-c", "burst-d"];

describe("kill -9 during a write burst", () => {
  it(`${BURST} concurrent creates on ${THREADS.length} threads, SIGKILL after ${KILL_AFTER_ACKS} acknowledgements: every acknowledged write survives the restart`, async () => {
    // Warmed up (libSQL schema, folders) so the burst is all writes.
    const { rolloutDir, dbPath, env, servers: [server] } = await cluster.shared(1, { COMPACT_EVERY: "10" });

    // Writes to one thread queue in the process; writes to different threads are in flight together.
    const acks: Artifact[] = [];
    const otherAnswers: HttpResult[] = [];
    let transportErrors = 0;
    let killed: Promise<void> | undefined;
    const send = async (i: number) => {
      const threadId = THREADS[i % THREADS.length] as string;
      try {
        const r = await http(server.url, "POST", `/v1/threads/${threadId}/artifacts`, {
          artifactType: "note",
          payload: { i },
        });
        if (r.status !== 201) {
          otherAnswers.push(r);
          return;
        }
        expect(r.json.thread.rolloutSeq).toBe(r.json.artifact.seq);
        acks.push(r.json.artifact);
        // The trigger is a count of acknowledgements, not a timer: the second half of the
        // burst goes out and the process is killed in the same tick, so it is cut short
        // however fast it answers the first half.
        if (acks.length === KILL_AFTER_ACKS) {
          secondHalf = Promise.all(range(BURST / 2).map((j) => send(BURST / 2 + j - 1)));
          killed = server.kill();
        }
      } catch {
        transportErrors++; // the connection died with the process: no answer, so no promise either
      }
    };
    let secondHalf: Promise<unknown> = Promise.resolve();
    await Promise.all(range(BURST / 2).map((i) => send(i - 1)));
    await secondHalf;
    await killed;
    expect(server.child.signalCode).toBe("SIGKILL");
    // Nothing but 201s before the kill; the kill really cut the burst short.
    expect(otherAnswers.map((r) => `${r.status} ${r.text}`)).toEqual([]);
    expect(acks.length).toBeGreaterThanOrEqual(KILL_AFTER_ACKS);
    expect(acks.length).toBeLessThan(BURST);
    expect(acks.length + transportErrors).toBe(BURST);
    expect(new Set(acks.map((a) => a.id)).size).toBe(acks.length);

    const restarted = await cluster.start(env);
    for (const threadId of THREADS) {
      const acked = acks.filter((a) => a.threadId === threadId);
      // On disk: patches 1..M, M >= the acknowledged count (a write may have landed with its answer lost).
      const seqs = committedSeqs(rolloutDir, threadId);
      expect(seqs).toEqual(range(seqs.length));
      expect(seqs.length).toBeGreaterThanOrEqual(acked.length);
      const patches = await readRollout(rolloutDir, threadId);
      expect(patches).toHaveLength(seqs.length);
      const bySeq = new Map(patches.map((p) => [p.seq, p]));
      for (const artifact of acked) expect(bySeq.get(artifact.seq)).toMatchObject({ op: "add", artifact });
      expect(new Set(acked.map((a) => a.seq)).size).toBe(acked.length);
      expect(new Set(patches.map((p) => p.artifact.id)).size).toBe(patches.length);

      // Restarted on the same DATA_DIR: a strong read answers the whole rollout and repairs the cache.
      const truth = await replay(rolloutDir, threadId);
      const strong = await http(restarted.url, "GET", `/v1/threads/${threadId}`);
      expect(strong.status).toBe(200);
      expect(["cache", "repaired"]).toContain(strong.headers.get("x-artifacts-source"));
      expect(strong.json).toEqual({ thread: threadView(truth) });
      for (const artifact of acked) expect(truth.artifacts.find((a) => a.seq === artifact.seq)).toEqual(artifact);

      const cached = await http(restarted.url, "GET", `/v1/threads/${threadId}?consistency=cache`);
      expect(cached.headers.get("x-artifacts-source")).toBe("cache");
      expect(cached.json).toEqual({ thread: threadView(truth) });
      expect(await readCacheFile(dbPath, threadId)).toEqual(expectedCacheRows(patches));

      // And the thread goes on at the next seq.
      const next = await http(restarted.url, "POST", `/v1/threads/${threadId}/artifacts`, {
        artifactType: "note",
        payload: "after the crash",
      });
      expect(next.status).toBe(201);
      expect(next.json.artifact.seq).toBe(patches.length + 1);
    }
  });
});
