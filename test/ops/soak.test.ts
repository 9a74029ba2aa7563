/**
 * Many writers, many processes, one thread, for a while: 3 server processes on one
 * DATA_DIR, 32 concurrent writers against each (request loops in this process), each
 * doing its creates one after the other. A 503 is retried after its Retry-After, as a
 * client would (a 503 promises nothing was written). At the end: every acknowledged
 * create is in the rollout exactly once, seqs are 1..N without a gap, no id twice, and
 * the cache equals the replay.
 *
 * `npm test` runs the full 3 x 32 x 200 = 19,200 creates (about 50 s on 2 cores);
 * SOAK_CREATES_PER_WRITER changes the 200 (`npm run test:soak` runs this file alone).
 */
import { describe, expect, it } from "vitest";
import type { Artifact } from "../../src/model/artifact.ts";
import { committedSeqs, http, range, readRollout, replay, threadView, useCluster } from "../support/cluster.ts";
import type { ServerProcess } from "../support/server-process.ts";

const PROCESSES = 3;
const WRITERS_PER_PROCESS = 32;
const CREATES_PER_WRITER = Number(process.env.SOAK_CREATES_PER_WRITER ?? 200);
const TOTAL = PROCESSES * WRITERS_PER_PROCESS * CREATES_PER_WRITER;
/** A create retried more often than this is a failure (each retry already waited its Retry-After). */
const MAX_RETRIES_PER_CREATE = 30;

const cluster = useCluster();

interface WriterLog {
  acks: Artifact[];
  retries: number;
  failures: string[];
}

async function writer(server: ServerProcess, threadId: string, p: number, w: number, log: WriterLog): Promise<void> {
  for (let i = 0; i < CREATES_PER_WRITER; i++) {
    for (let attempt = 0;; attempt++) {
      const r = await http(server.url, "POST", `/v1/threads/${threadId}/artifacts`, {
        artifactType: "note",
        payload: { p, w, i },
      });
      if (r.status === 201) {
        log.acks.push(r.json.artifact);
        break;
      }
      const retryAfter = r.headers.get("retry-after");
      if (r.status !== 503 || retryAfter === null || attempt >= MAX_RETRIES_PER_CREATE) {
        log.failures.push(`p${p} w${w} i${i}: ${r.status} ${r.text}`);
        break;
      }
      log.retries++;
      // What a client does with a 503: wait as long as it was told, then try again.
      await new Promise((resolve) => setTimeout(resolve, Number(retryAfter) * 1000));
    }
  }
}

describe("soak: many writers on one thread across processes", () => {
  it(
    `${PROCESSES} processes x ${WRITERS_PER_PROCESS} writers x ${CREATES_PER_WRITER} creates = ${TOTAL}: none lost, none twice, seqs 1..N, cache = replay`,
    async () => {
      const { rolloutDir, servers } = await cluster.shared(PROCESSES, {
        MAX_ARTIFACTS_PER_THREAD: String(TOTAL),
        // About 16 compactions over the run, written while the other processes race.
        COMPACT_EVERY: String(Math.max(10, Math.floor(TOTAL / 16))),
      });
      const threadId = "soak";

      const started = performance.now();
      const log: WriterLog = { acks: [], retries: 0, failures: [] };
      await Promise.all(
        servers.flatMap((server, p) => range(WRITERS_PER_PROCESS, 0).map((w) => writer(server, threadId, p, w, log))),
      );
      const seconds = (performance.now() - started) / 1000;
      console.log(
        `soak: ${TOTAL} creates by ${PROCESSES * WRITERS_PER_PROCESS} writers in ${seconds.toFixed(1)} s ` +
          `(${(TOTAL / seconds).toFixed(0)}/s), ${log.retries} retries after a 503`,
      );

      expect(log.failures).toEqual([]);
      expect(log.acks).toHaveLength(TOTAL);
      // Every acknowledged create owns its seq; together they are 1..N.
      expect(log.acks.map((a) => a.seq).sort((a, b) => a - b)).toEqual(range(TOTAL));
      expect(new Set(log.acks.map((a) => a.id)).size).toBe(TOTAL);

      // The rollout holds exactly those N patches, each acknowledged artifact exactly once.
      expect(committedSeqs(rolloutDir, threadId)).toEqual(range(TOTAL));
      const patches = await readRollout(rolloutDir, threadId);
      const bySeq = new Map(patches.map((p) => [p.seq, p]));
      for (const artifact of log.acks) expect(bySeq.get(artifact.seq)?.artifact).toEqual(artifact);
      const payloads = new Set(patches.map((p) => JSON.stringify(p.artifact.payload)));
      expect(payloads.size).toBe(TOTAL);

      // Every process's cache-only read equals the replay.
      const truth = await replay(rolloutDir, threadId);
      for (const server of servers) {
        await http(server.url, "GET", `/v1/threads/${threadId}`); // a strong read repairs, if anything is behind
        const cached = await http(server.url, "GET", `/v1/threads/${threadId}?consistency=cache`);
        expect(cached.headers.get("x-artifacts-source")).toBe("cache");
        expect(cached.json).toEqual({ thread: threadView(truth) });
      }
    },
    // A bound for the whole run, not a timing assertion: generous for a 2-core machine.
    Math.max(180_000, TOTAL * 30),
  );
});
