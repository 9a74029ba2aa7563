/**
 * DESIGN.md's durability promise under power loss, on a simulated disk that keeps only
 * what was fsynced (test/support/power-loss-fs.ts): the app writes through the real
 * FsBlobStore (concurrent writers on a few threads, compaction every 4 seqs), the power
 * goes at a random call of the file system (journal checkpoints included), and after a reboot every write that was
 * answered 2xx is in the rollout, at its seq, byte for byte; every thread's commits are
 * contiguous from 1 and readable; and a new server on the rebooted disk goes on writing
 * at the next seq.
 */
import { describe, expect, it } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import type { Artifact } from "../../src/model/artifact.ts";
import type { ArtifactPatch } from "../../src/model/patch.ts";
import { firstSeqOfCommitKey } from "../../src/rollout/keys.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { createTestApp } from "../support/in-process.ts";
import { PowerLossDisk } from "../support/power-loss-fs.ts";

const ROOT = "/data/rollouts";
const THREADS = ["p0", "p1", "p2"];
const WRITES = 36;
/** POWER_LOSS_TRIALS / POWER_LOSS_SEED: a longer run, other loss points. */
const TRIALS = Number(process.env.POWER_LOSS_TRIALS ?? 60);

interface Acknowledged {
  threadId: string;
  seq: number;
  artifact: Artifact;
}

/**
 * The store as the servers open it: commits through the journal, checkpointed by a
 * flush of the file system (`journal`); asked to journal on a disk that cannot be
 * flushed at once, so each commit fsyncs on its own (`journal, no syncfs`); or never
 * asked to (`plain`).
 */
type Mode = "journal" | "journal, no syncfs" | "plain";
const diskFor = (mode: Mode) => new PowerLossDisk({ fileSystemSync: mode !== "journal, no syncfs" });
const storeOn = (disk: PowerLossDisk, mode: Mode) =>
  new FsBlobStore(
    ROOT,
    disk.ops(),
    mode === "plain" ? {} : { journaled: (key) => firstSeqOfCommitKey(key) !== null, pid: 1, isAlive: () => false },
  );

/** Concurrent creates and updates on THREADS, 6 at a time; what was answered 2xx. */
async function workload(disk: PowerLossDisk, mode: Mode): Promise<Acknowledged[]> {
  const store = storeOn(disk, mode);
  const t = createTestApp({ blobStore: store, env: { COMPACT_EVERY: "4" } });
  const acknowledged: Acknowledged[] = [];
  const ids = new Map<string, string[]>();
  try {
    let next = 0;
    const worker = async () => {
      while (next < WRITES) {
        const i = next++;
        const threadId = THREADS[i % THREADS.length] as string;
        const mine = ids.get(threadId) ?? [];
        const update = i % 3 === 2 && mine.length > 0;
        const result = update
          ? await t.request("PATCH", `/v1/threads/${threadId}/artifacts/${mine[0]}`, { payload: { i } })
          : await t.request("POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "note", payload: { i } });
        // Checkpoints among the writes (the servers' come every 2 s), so the power goes during some.
        if (i % 6 === 5) await store.checkpoint().catch(() => {});
        if (result.status >= 200 && result.status < 300) {
          acknowledged.push({ threadId, seq: result.json.thread.rolloutSeq, artifact: result.json.artifact });
          if (!update) ids.set(threadId, [...mine, result.json.artifact.id]);
        } else {
          expect(result.status).toBe(503);
        }
      }
    };
    await Promise.all(Array.from({ length: 6 }, worker));
  } finally {
    await t.close().catch(() => {});
    // (A journal's timer stops; its checkpoint fails quietly once the power is gone.)
    await store.close().catch(() => {});
  }
  return acknowledged;
}

/** After a reboot: every thread's commits from 1, contiguous and readable; every acknowledged write in them. */
async function check(disk: PowerLossDisk, mode: Mode, acknowledged: Acknowledged[]): Promise<number> {
  // The first call of a journaled store replays the journals: what the power loss took comes back.
  const rollout = new Rollout(storeOn(disk, mode));
  let commits = 0;
  for (const threadId of THREADS) {
    const list = await rollout.listCommits("local", threadId, 0);
    commits += list.length;
    let seq = 0;
    const bySeq = new Map<number, ArtifactPatch>();
    for (const commit of list) {
      expect(commit.firstSeq, `${threadId} after seq ${seq}`).toBe(seq + 1);
      seq = commit.lastSeq;
      for (const patch of commit.patches) bySeq.set(patch.seq, patch as ArtifactPatch);
    }
    for (const ack of acknowledged.filter((a) => a.threadId === threadId)) {
      const patch = bySeq.get(ack.seq);
      expect(patch, `${threadId} seq ${ack.seq} was acknowledged`).toBeDefined();
      expect(JSON.stringify(patch?.artifact)).toBe(JSON.stringify(ack.artifact));
    }
  }
  return commits;
}

for (const mode of ["plain", "journal", "journal, no syncfs"] as const) {
  describe(`power loss at a random point of the write path, ${mode} commits (simulated disk: only fsynced data survives)`, () => {
    it(`every acknowledged write survives, over ${TRIALS} loss points`, async () => {
      // How many file system calls the whole workload makes: loss points are drawn below it.
      const dry = diskFor(mode);
      const all = await workload(dry, mode);
      expect(all).toHaveLength(WRITES);
      expect(await check(dry, mode, all)).toBeGreaterThan(0);
      const calls = dry.calls;

      let seed = Number(process.env.POWER_LOSS_SEED ?? 7);
      const random = () => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed / 2 ** 31;
      };
      let acknowledgedTotal = 0;
      let checked = 0;
      for (let trial = 0; trial < TRIALS; trial++) {
        const disk = diskFor(mode);
        const at = 1 + Math.floor(random() * calls);
        disk.powerLossAt(at);
        const acknowledged = await workload(disk, mode);
        // (A run may make fewer calls than the dry one, its writes grouped otherwise: then the power goes after it.)
        if (!disk.off) disk.powerLossNow();
        disk.reboot();
        checked += await check(disk, mode, acknowledged);
        acknowledgedTotal += acknowledged.length;
        // A server on the rebooted disk writes on, at each thread's next seq.
        const store = storeOn(disk, mode);
        const after = createTestApp({ blobStore: store });
        try {
          for (const threadId of THREADS) {
            const head = Math.max(0, ...acknowledged.filter((a) => a.threadId === threadId).map((a) => a.seq));
            const next = await after.request("POST", `/v1/threads/${threadId}/artifacts`, {
              artifactType: "after",
              payload: {},
            });
            expect(next.status, `${threadId} after loss at ${at}: ${next.text}`).toBe(201);
            expect(next.json.thread.rolloutSeq).toBeGreaterThan(head);
          }
        } finally {
          await after.close();
          await store.close();
        }
      }
      // Enough happened to mean something: writes were acknowledged before most loss points.
      expect(acknowledgedTotal).toBeGreaterThan(TRIALS * 5);
      console.log(
        `power loss (${mode}): ${TRIALS} loss points over ${calls} file system calls, ${acknowledgedTotal} acknowledged writes, ${checked} commits checked, 0 lost`,
      );
    });
  });
}
