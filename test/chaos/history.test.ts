/**
 * A randomized history across real processes (the Jepsen way, small): three Node servers
 * on one DATA_DIR, lanes of writers on a few colliding threads (creates with and without
 * identity keys, idempotent repeats and conflicts, updates, merges, removes, thread
 * deletes, forks), SSE readers that resume with Last-Event-ID, and faults (kill -9 and
 * restart, SIGSTOP/SIGCONT, the libSQL files deleted under running processes). Then the
 * servers stop, `npm run rebuild` runs, one server starts again, and
 * test/support/history-check.ts replays the rollout folder itself and holds every
 * answer, read and event against it.
 *
 * Default: a short run that fits `npm test`. A long one:
 *   CHAOS_SEED=42 CHAOS_DURATION_MS=600000 npm run test:chaos
 * A run that finds something keeps its data folder (and history.json, the recording);
 * CHAOS_KEEP_DIR=1 keeps it always.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import { useCluster } from "../support/cluster.ts";
import {
  checkFinalReads,
  checkHistory,
  compareRollouts,
  planFinalReads,
  readRolloutModel,
  type RequestRecord,
  type Violation,
} from "../support/history-check.ts";
import { Lanes, ProcessPool, Recorder, type RunConfig, runFaults, StreamReader } from "../support/history.ts";
import { runRebuildProcess } from "../support/ops.ts";
import { waitFor } from "../support/wait.ts";

const envSeed = process.env.CHAOS_SEED;
const envDuration = process.env.CHAOS_DURATION_MS;
const long = envSeed !== undefined || envDuration !== undefined;
const SEED = envSeed !== undefined ? Number(envSeed) : long ? Math.floor(Math.random() * 2 ** 31) : 1;
const DURATION_MS = envDuration !== undefined ? Number(envDuration) : 20_000;

const config: RunConfig = {
  seed: SEED,
  durationMs: DURATION_MS,
  threads: ["h0", "h1", "h2", "h3"],
  lanes: 6,
  readersPerThread: 2,
  maxOpsPerLane: long ? Number.POSITIVE_INFINITY : 600,
  requestTimeoutMs: 10_000,
  faultGapMs: [1500, 3500],
};

const cluster = useCluster();

function summarize(requests: RequestRecord[]): Record<string, Record<string, number>> {
  const counts: Record<string, Record<string, number>> = {};
  for (const r of requests) {
    const byStatus = (counts[r.kind] ??= {});
    const key = r.status === null ? "error" : String(r.status);
    byStatus[key] = (byStatus[key] ?? 0) + 1;
  }
  return counts;
}

function describeViolation(v: Violation, i: number): string {
  const details = v.details === undefined ? "" : `\n    ${JSON.stringify(v.details).slice(0, 1500)}`;
  return `#${i + 1} [${v.check}]${v.thread ? ` ${v.thread}` : ""}: ${v.message}${details}`;
}

/** What the servers printed besides their listening line, counted by message (diagnostics, not verdicts). */
function serverWarnings(outputs: string[]): string[] {
  const counts = new Map<string, number>();
  // console.warn(message, fields) spans lines: an indented or closing line continues the one before.
  const lines = outputs.flatMap((o) => o.replace(/\n(?=[ \t}])/g, " ").split("\n"));
  for (const line of lines) {
    if (!line.trim() || /listening on/.test(line)) continue;
    // Folder names carry the run's temp dir: drop it so equal messages count together.
    let message = line.replace(/\/tmp\/artifacts-chaos-[^/]+/g, "<dir>").replace(/\s+/g, " ").slice(0, 300);
    try {
      const parsed = JSON.parse(line) as { msg?: string; error?: string; level?: string };
      // Access lines and other info: not warnings.
      if (parsed.level === "info" || parsed.level === "debug") continue;
      if (parsed.msg) message = `${parsed.msg}${parsed.error ? `: ${String(parsed.error).slice(0, 200)}` : ""}`;
    } catch {
      // a plain line
    }
    counts.set(message, (counts.get(message) ?? 0) + 1);
  }
  return [...counts].slice(0, 15).map(([m, n]) => `server said (${n}x): ${m}`);
}

/** Up to `n` violations, taken round-robin over their checks so every kind found shows. */
function sample(violations: Violation[], n: number): Violation[] {
  const byCheck = new Map<string, Violation[]>();
  for (const v of violations) {
    const list = byCheck.get(v.check) ?? [];
    list.push(v);
    byCheck.set(v.check, list);
  }
  const picked: Violation[] = [];
  for (let i = 0; picked.length < Math.min(n, violations.length); i++) {
    for (const list of byCheck.values()) if (list[i] && picked.length < n) picked.push(list[i] as Violation);
  }
  return picked;
}

describe("a randomized multi-process history", () => {
  it(
    `seed ${SEED}, ${DURATION_MS} ms: every answer, read and event agrees with an independent replay of the rollout`,
    async () => {
      // Not a cluster folder: kept when the run finds something (the rollout is the evidence).
      const dir = mkdtempSync(join(tmpdir(), "artifacts-chaos-"));
      const rolloutDir = join(dir, "rollouts");
      const env = { DATA_DIR: dir, COMPACT_EVERY: "5" };
      const pool = new ProcessPool(cluster, env);
      const recorder = new Recorder(config.requestTimeoutMs);
      const readers: StreamReader[] = [];
      const violations: Violation[] = [];
      const started = performance.now();
      let checked = false;
      try {
        await pool.start(3);
        for (const thread of config.threads) {
          for (let i = 0; i < config.readersPerThread; i++) {
            const reader = new StreamReader(pool, SEED, `sse-${thread}-${i}`, thread);
            readers.push(reader);
            reader.start();
          }
        }
        const deadline = performance.now() + DURATION_MS;
        const lanes = new Lanes(pool, recorder, config);
        const faults = runFaults(pool, config, dir, deadline);
        await lanes.run(deadline);
        await faults;
        pool.resumeAll();
        const traffic = performance.now();

        // Quiesce: stop every server, rebuild the cache from the rollout, serve from one process.
        await pool.stopAll();
        // What the processes left unfinished (the rebuild finishes it): deleted content still in the rollout.
        const unswept = [...readRolloutModel(rolloutDir).threads.values()].flatMap((t) => {
          const real = t.files.filter((f) => f.kind === "commit" && f.key < t.latest);
          return real.length === 0 ? [] : [
            `${t.id}: ${real.length} real commits below its latest tombstone ${t.latest} (first ${
              real[0]?.key
            }), life.json ${JSON.stringify(t.life)}`,
          ];
        });
        const rebuild = await runRebuildProcess({ DATA_DIR: dir });
        if (rebuild.code !== 0) {
          violations.push({
            check: "rebuild",
            message: `npm run rebuild exited ${rebuild.code}`,
            details: { stdout: rebuild.stdout.slice(-2000), stderr: rebuild.stderr.slice(-2000) },
          });
        }
        await pool.restartOne();
        const model = readRolloutModel(rolloutDir);

        // Every reader catches up with its thread's head (a tombstone's id included) on the last process.
        await Promise.all(readers.map(async (reader) => {
          const head = model.threads.get(reader.record.thread)?.head ?? 0;
          try {
            await waitFor(
              `${reader.record.name} to reach seq ${head}`,
              async () => (reader.lastSeq >= head ? true : undefined),
              { timeoutMs: 15_000 },
            );
          } catch (error) {
            violations.push({
              check: "8-catch-up",
              thread: reader.record.thread,
              message: `${reader.record.name} stopped at ${reader.lastSeq}, head ${head}: ${String(error)}`,
            });
          }
        }));
        await Promise.all(readers.map((r) => r.stop()));

        // 7. Reads after the rebuild equal the replay.
        const plans = planFinalReads(model);
        const final = pool.pick(() => 0);
        if (!final) throw new Error("the final process is not up");
        const results = [];
        for (const plan of plans) {
          try {
            const response = await fetch(new URL(plan.path, final.url), { signal: AbortSignal.timeout(10_000) });
            const text = await response.text();
            let json: unknown;
            try {
              json = JSON.parse(text);
            } catch {
              json = text;
            }
            results.push({ status: response.status, json });
          } catch (error) {
            results.push({ status: null, json: undefined, error: String(error) });
          }
        }
        violations.push(...checkFinalReads(plans, results));
        violations.push(...compareRollouts(model, readRolloutModel(rolloutDir)));

        const { violations: found, notes } = checkHistory({
          model,
          requests: recorder.requests,
          readers: readers.map((r) => r.record),
        });
        violations.push(...found);
        checked = true;

        const events = readers.reduce((n, r) => n + r.record.events.length, 0);
        const threads = [...model.threads.values()];
        const lives = threads.filter((t) => config.threads.includes(t.id)).map((t) =>
          `${t.id}: head ${t.head}, latest tombstone ${t.latest}, ${t.files.length} files (${
            t.files.filter((f) => f.kind === "stub").length
          } stubs)`
        );
        const forks = threads.filter((t) => !config.threads.includes(t.id));
        lives.push(`${forks.length} fork threads (${forks.reduce((n, t) => n + t.head, 0)} seqs)`);
        const byCheck: Record<string, number> = {};
        for (const v of violations) byCheck[v.check] = (byCheck[v.check] ?? 0) + 1;
        console.log(
          [
            `chaos history: seed ${SEED}, ${DURATION_MS} ms of traffic (${
              Math.round(traffic - started)
            } ms incl. startup), ${recorder.requests.length} requests`,
            `reproduce: CHAOS_SEED=${SEED} CHAOS_DURATION_MS=${DURATION_MS} npm run test:chaos`,
            `requests by kind and status: ${JSON.stringify(summarize(recorder.requests))}`,
            `faults (${pool.faults.length}): ${
              pool.faults.map((f) => `${f.kind} ${f.process} (${f.detail})`).join("; ")
            }`,
            `sse: ${readers.length} readers, ${events} events, ${
              readers.reduce((n, r) => n + r.connections, 0)
            } connections, ${readers.reduce((n, r) => n + r.failures, 0)} failed`,
            `rollout: ${model.stubs ? "stubs present" : "no stubs"}; ${lives.join("; ")}`,
            `rebuild: exit ${rebuild.code}, ${rebuild.lines.at(-1) ?? ""}`,
            `final reads: ${plans.length}`,
            ...notes.map((n) => `note: ${n}`),
            ...unswept.map((n) => `before the rebuild (servers stopped gracefully): ${n}`),
            ...serverWarnings(cluster.outputs()),
            `violations: ${violations.length} ${JSON.stringify(byCheck)}`,
            ...sample(violations, 20).map(describeViolation),
          ].join("\n"),
        );
      } finally {
        pool.resumeAll();
        await Promise.all(readers.map((r) => r.stop()));
        await cluster.cleanup();
        if (checked && violations.length === 0 && !process.env.CHAOS_KEEP_DIR) {
          rmSync(dir, { recursive: true, force: true });
        } else {
          // The recording beside the rollout, so the checker can be run on it again offline.
          writeFileSync(
            join(dir, "history.json"),
            JSON.stringify({ seed: SEED, requests: recorder.requests, readers: readers.map((r) => r.record) }),
          );
          console.log(`data dir kept (rollouts/, artifacts.db, history.json): ${dir}`);
        }
      }
      expect(violations.length, `${violations.length} violations (see the log above)`).toBe(0);
    },
    DURATION_MS + 120_000,
  );
});
