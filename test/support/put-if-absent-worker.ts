/**
 * One side of the cross-process put-if-absent race (test/blob/fs-race.test.ts).
 *
 *   node --import tsx test/support/put-if-absent-worker.ts <rootDir> <key> <workerName> <count>
 *
 * Builds `count` bodies unique to this worker and call (see `raceBody`), prints
 * `{"ready":true}`, waits for a line on stdin (or stdin's end; none when stdin is a
 * TTY) so the parent can release every worker at once, then fires `count` concurrent
 * `putIfAbsent(key, body)` calls on its own FsBlobStore over `rootDir` and prints one
 * JSON line: `{"worker", "key", "results": ["created" | "exists", ...]}` (by call index).
 */
import { pathToFileURL } from "node:url";
import { FsBlobStore } from "../../src/blob/fs.ts";
import type { PutIfAbsentResult } from "../../src/blob/port.ts";

export interface WorkerReport {
  worker: string;
  key: string;
  results: PutIfAbsentResult[];
}

export const READY_LINE = '{"ready":true}';

/** Roughly 256 KB of UTF-8, every part of it naming the worker and call: a torn or mixed write cannot equal any single body. */
export function raceBody(workerName: string, index: number): string {
  const header = `${JSON.stringify({ worker: workerName, index })}\n`;
  const unit = `${workerName}#${index}·é;`;
  return `${header}${unit.repeat(Math.ceil((256 * 1024) / unit.length))}\nend ${workerName}#${index}\n`;
}

async function waitForGo(): Promise<void> {
  const stdin = process.stdin;
  if (stdin.isTTY) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      stdin.off("data", done);
      stdin.off("end", done);
      stdin.off("error", done);
      resolve();
    };
    stdin.on("data", done);
    stdin.on("end", done);
    stdin.on("error", done);
  });
  stdin.destroy();
}

async function main(args: string[]): Promise<void> {
  const [rootDir, key, workerName, countText] = args;
  const count = Number(countText);
  if (!rootDir || !key || !workerName || !Number.isSafeInteger(count) || count < 1) {
    throw new Error("usage: put-if-absent-worker.ts <rootDir> <key> <workerName> <count>");
  }
  const bodies = Array.from({ length: count }, (_, index) => raceBody(workerName, index));
  const store = new FsBlobStore(rootDir);
  process.stdout.write(`${READY_LINE}\n`);
  await waitForGo();
  const results = await Promise.all(bodies.map((body) => store.putIfAbsent(key, body)));
  const report: WorkerReport = { worker: workerName, key, results };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  });
}
