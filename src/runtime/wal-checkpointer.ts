/**
 * Checkpoints a libSQL file's WAL from a worker thread (Node), so that the main thread's
 * commits seldom copy pages back into the database or wait for its fsyncs.
 *
 * Why: the cache's connection checkpoints on the committing call once the WAL holds
 * `wal_autocheckpoint` pages (10,000: see cache/schema.ts), and that checkpoint copies
 * the pages and fsyncs the WAL and the database file on the event loop. Under creates
 * over 64 threads that stalled every request in flight for up to ~45-60 ms about twice a
 * second (~3% of the main thread). A passive checkpoint from a second connection every
 * `everyMs` does that work beside the event loop (SQLite lets one checkpointer run while
 * the writer appends): the main connection's own checkpoint, still the backstop, then
 * finds the pages already copied and synced (measured: ~400 ms of stalls in 12 s →
 * ~130, the longest 15 ms; docs/decisions.md "Cache").
 *
 * The worker runs a script given as source (`eval`): no second module graph to load
 * through the TypeScript loader. The native binding is the one the main thread loaded
 * (one SQLite library per process), which SQLite's locking between the two connections
 * of one process relies on.
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

/** One pass of the checkpointer, as `PRAGMA wal_checkpoint(PASSIVE)` answers it. */
export type CheckpointPass =
  | { ok: true; /** Frames in the WAL. */ log: number; /** Of them, copied into the database. */ checkpointed: number }
  | { ok: false; error: string };

export interface WalCheckpointerOptions {
  /** The database file. */
  path: string;
  /** Between the end of one pass and the start of the next (ms). */
  everyMs: number;
  /** How long a pass waits for a lock held by another connection (ms). */
  busyTimeoutMs: number;
  /** Told of each periodic pass (tests; the worker only reports them when this is given). */
  onPass?: (pass: CheckpointPass) => void;
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.binding);
const db = new Database(workerData.path, { timeout: workerData.busyTimeoutMs });
const checkpoint = db.prepare("PRAGMA wal_checkpoint(PASSIVE)");
function pass() {
  try {
    const row = checkpoint.all()[0] || {};
    return { ok: true, log: Number(row.log), checkpointed: Number(row.checkpointed) };
  } catch (error) {
    // A lock held past the timeout, a file gone: the next pass tries again.
    return { ok: false, error: String((error && error.message) || error) };
  }
}
let timer;
function periodic() {
  const result = pass();
  if (workerData.report) parentPort.postMessage({ pass: result });
  timer = setTimeout(periodic, workerData.everyMs);
}
timer = setTimeout(periodic, workerData.everyMs);
parentPort.on("message", (message) => {
  if (message.now !== undefined) return parentPort.postMessage({ now: message.now, pass: pass() });
  if (message.close) {
    clearTimeout(timer);
    db.close();
    parentPort.close();
  }
});
`;

type FromWorker = { pass: CheckpointPass; now?: number };

export class WalCheckpointer {
  readonly #worker: Worker;
  readonly #exited: Promise<void>;
  /** Passes asked for (`now`), by request number. */
  readonly #asked = new Map<number, (pass: CheckpointPass) => void>();
  #requests = 0;

  constructor(options: WalCheckpointerOptions) {
    const binding = createRequire(import.meta.url).resolve("libsql");
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        binding,
        path: options.path,
        everyMs: options.everyMs,
        busyTimeoutMs: options.busyTimeoutMs,
        report: options.onPass !== undefined,
      },
    });
    const onPass = options.onPass;
    this.#worker.on("message", (message: FromWorker) => {
      if (message.now === undefined) return onPass?.(message.pass);
      this.#asked.get(message.now)?.(message.pass);
      this.#asked.delete(message.now);
    });
    // A worker that fails leaves the main connection's own checkpoints, as before it.
    this.#worker.on("error", () => {});
    this.#exited = new Promise((resolve) => this.#worker.once("exit", () => resolve()));
    // Never what keeps a process alive.
    this.#worker.unref();
  }

  /** A pass now, after whatever was committed before the call (tests). */
  now(): Promise<CheckpointPass> {
    const request = ++this.#requests;
    return new Promise((resolve) => {
      this.#asked.set(request, resolve);
      this.#worker.postMessage({ now: request });
    });
  }

  /** Stops the passes and closes the worker's connection; resolves once the worker has exited. */
  close(): Promise<void> {
    this.#worker.postMessage({ close: true });
    for (const answer of this.#asked.values()) answer({ ok: false, error: "closed" });
    this.#asked.clear();
    return this.#exited;
  }
}
