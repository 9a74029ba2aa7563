/**
 * The cross-process race: many concurrent putIfAbsent of one key from two real
 * processes, exactly one "created", and the stored object is exactly the creator's body.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import { raceBody, READY_LINE, type WorkerReport } from "../support/put-if-absent-worker.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const WORKER = fileURLToPath(new URL("../support/put-if-absent-worker.ts", import.meta.url));
const CALLS_PER_PROCESS = 30;
const KEYS = [
  "tenants/local/threads/race-1/patches/000000000001.json",
  "tenants/local/threads/race-1/patches/000000000002.json",
  "tenants/local/threads/race-2/patches/000000000001.json",
  "tenants/other/threads/race-1/snapshots/000000000100.json",
];

interface Worker {
  child: ChildProcessWithoutNullStreams;
  ready: Promise<void>;
  closed: Promise<void>;
  output: () => { stdout: string; stderr: string };
  code: () => number | null;
}

function startWorker(root: string, key: string, name: string, count: number): Worker {
  const child = spawn(process.execPath, ["--import", "tsx", WORKER, root, key, name, String(count)], {
    cwd: REPO,
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const closed = once(child, "close").then(() => {});
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.split("\n").includes(READY_LINE)) resolve();
    });
    closed.then(() => reject(new Error(`worker ${name} exited before it was ready:\n${stdout}\n${stderr}`)));
  });
  ready.catch(() => {}); // reported through `await ready` below; never an unhandled rejection
  return { child, ready, closed, output: () => ({ stdout, stderr }), code: () => child.exitCode };
}

function reportOf(worker: Worker): WorkerReport {
  const { stdout, stderr } = worker.output();
  expect(worker.code(), `worker failed:\n${stderr}`).toBe(0);
  const lines = stdout.trim().split("\n");
  expect(lines[0]).toBe(READY_LINE);
  expect(lines).toHaveLength(2);
  return JSON.parse(lines[1] as string) as WorkerReport;
}

describe("FsBlobStore putIfAbsent across processes", () => {
  let root: string;
  const workers: Worker[] = [];

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "blob-race-"));
  });

  afterEach(async () => {
    for (const worker of workers.splice(0)) {
      if (worker.child.exitCode === null && worker.child.signalCode === null) {
        worker.child.kill("SIGKILL");
        await worker.closed;
      }
    }
    await rm(root, { recursive: true, force: true });
  });

  it("two processes racing on each of several keys: exactly one created per key, content intact", async () => {
    const pairs = KEYS.map((key, k) => {
      const pair = [
        startWorker(root, key, `k${k}-left`, CALLS_PER_PROCESS),
        startWorker(root, key, `k${k}-right`, CALLS_PER_PROCESS),
      ];
      workers.push(...pair);
      return { key, pair };
    });
    // Barrier: every worker has started and built its bodies; release them all at once.
    await Promise.all(workers.map((worker) => worker.ready));
    for (const worker of workers) worker.child.stdin.end("go\n");
    await Promise.all(workers.map((worker) => worker.closed));

    const store = new FsBlobStore(root);
    for (const { key, pair } of pairs) {
      const reports = pair.map(reportOf);
      const creators: Array<{ worker: string; index: number }> = [];
      for (const report of reports) {
        expect(report.key).toBe(key);
        expect(report.results).toHaveLength(CALLS_PER_PROCESS);
        report.results.forEach((result, index) => {
          expect(["created", "exists"]).toContain(result);
          if (result === "created") creators.push({ worker: report.worker, index });
        });
      }
      expect(creators, `creators of ${key}`).toHaveLength(1);
      const creator = creators[0] as { worker: string; index: number };
      const expected = Buffer.from(raceBody(creator.worker, creator.index), "utf8");
      const onDisk = await readFile(join(root, key));
      expect(onDisk.length).toBe(expected.length);
      expect(onDisk.equals(expected), `${key} is not byte-identical to ${creator.worker}#${creator.index}'s body`).toBe(
        true,
      );
      expect((await store.get(key)) === raceBody(creator.worker, creator.index)).toBe(true);
    }

    expect(await store.list("")).toEqual([...KEYS].sort());
    expect(await readdir(join(root, ".tmp"))).toEqual([]);
  });
});
