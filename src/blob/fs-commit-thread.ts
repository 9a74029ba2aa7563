/**
 * The fs journal's flushes (fs-commit-batch.ts) on a thread of their own, on Node: each
 * flush is one message there and one back, and its file calls (a temp file written, linked
 * and removed per commit, the journal's append and `fdatasync`) run beside the event loop
 * instead of on it. They were the largest part of a create's main-thread CPU over many
 * threads, and the `fdatasync` no longer needs a turn of the loop to be dispatched and
 * another to be answered (docs/decisions.md, "Creates over many threads").
 *
 * The thread writes the journal through the descriptor the store opened (one process, one
 * descriptor table); the journal never closes a journal while a flush on it is in flight.
 * Like the libSQL writer (runtime/libsql-writer.ts), the thread runs a script given as
 * source: no second module graph through the TypeScript loader (and the built-in modules
 * taken with `process.getBuiltinModule`, which a script evaluated as CommonJS or as a
 * module alike has: a worker evaluates as its process was told to, `--input-type`). If the thread fails, the
 * flush in flight fails (its commits are answered 503 and were never acknowledged), and
 * the flushes after it run in process.
 */
import { Worker } from "node:worker_threads";
import { type CommitBatchWriter, type CommitEntry, type CommitOutcome, PUT_ATTEMPTS } from "./fs-commit-batch.ts";
import type { FileOps } from "./fs-ops.ts";

/** The in-process writer's steps (fs-commit-batch.ts: putNew, journalLine, the append and its sync), in plain JS. */
const WORKER_SOURCE = `
const { parentPort } = process.getBuiltinModule("node:worker_threads");
const fs = process.getBuiltinModule("node:fs");
const path = process.getBuiltinModule("node:path");
const crypto = process.getBuiltinModule("node:crypto");
function failure(error) {
  return { message: String((error && error.message) || error), code: error && typeof error.code === "string" ? error.code : undefined };
}
function removeTemp(temp) {
  try { fs.unlinkSync(temp); } catch {}
}
function putNew(tempDir, entry) {
  for (let attempt = 1;; attempt++) {
    const temp = path.join(tempDir, crypto.randomUUID());
    let error;
    try {
      const fd = fs.openSync(temp, "wx");
      try { fs.writeFileSync(fd, entry.body, "utf8"); } finally { fs.closeSync(fd); }
      try {
        fs.linkSync(temp, entry.target);
        return true;
      } catch (linkError) {
        if (linkError && linkError.code === "EEXIST") return false;
        error = linkError;
      } finally {
        removeTemp(temp);
      }
    } catch (writeError) {
      error = writeError;
      removeTemp(temp);
    }
    if (!(error && error.code === "ENOENT") || attempt >= ${PUT_ATTEMPTS}) throw error;
    fs.mkdirSync(tempDir, { recursive: true });
    fs.mkdirSync(path.dirname(entry.target), { recursive: true });
  }
}
parentPort.on("message", (message) => {
  if (message.close) return parentPort.close();
  const outcomes = [];
  let lines = "";
  for (const entry of message.entries) {
    try {
      if (putNew(message.tempDir, entry)) {
        outcomes.push("created");
        lines += JSON.stringify({ k: entry.key, b: entry.body, t: entry.t }) + "\\n";
      } else outcomes.push("exists");
    } catch (error) {
      outcomes.push({ failed: failure(error) });
    }
  }
  if (lines !== "") {
    try {
      fs.writeFileSync(message.fd, lines, "utf8");
      fs.fdatasyncSync(message.fd);
    } catch (error) {
      return parentPort.postMessage({ id: message.id, error: failure(error) });
    }
  }
  parentPort.postMessage({ id: message.id, outcomes });
});
`;

interface Failure {
  message: string;
  code?: string;
}

type FromThread =
  | { id: number; outcomes: ("created" | "exists" | { failed: Failure })[]; error?: undefined }
  | { id: number; error: Failure };

interface Waiting {
  resolve: (outcomes: CommitOutcome[]) => void;
  reject: (error: unknown) => void;
}

export class CommitThread implements CommitBatchWriter {
  readonly #fallback: CommitBatchWriter;
  readonly #worker: Worker;
  readonly #waiting = new Map<number, Waiting>();
  readonly #exited: Promise<void>;
  #calls = 0;
  #gone = false;

  /** `fallback`: the in-process writer, for journals without a descriptor and once the thread is gone. */
  constructor(fallback: CommitBatchWriter) {
    this.#fallback = fallback;
    this.#worker = new Worker(WORKER_SOURCE, { eval: true });
    this.#worker.on("message", (message: FromThread) => {
      const waiting = this.#waiting.get(message.id);
      if (!waiting) return;
      this.#waiting.delete(message.id);
      if (this.#waiting.size === 0) this.#worker.unref();
      if (message.error) waiting.reject(fsError(message.error));
      else {
        waiting.resolve(
          message.outcomes.map((outcome) =>
            typeof outcome === "string" ? outcome : { failed: fsError(outcome.failed) }
          ),
        );
      }
    });
    this.#worker.on("error", (error: Error) => this.#fail(error));
    this.#exited = new Promise((resolve) =>
      this.#worker.once("exit", () => {
        this.#fail(new Error("the journal's writer thread exited"));
        resolve();
      })
    );
    // Only a flush in flight keeps the process alive (its callers may be all there is:
    // the last checkpoint at shutdown), an idle thread never.
    this.#worker.unref();
  }

  write(journal: FileOps, tempDir: string, entries: readonly CommitEntry[]): Promise<CommitOutcome[]> {
    if (this.#gone || journal.fd === undefined) return this.#fallback.write(journal, tempDir, entries);
    const id = ++this.#calls;
    // Posted before this returns: the journal counts the flush as in flight from here.
    const done = new Promise<CommitOutcome[]>((resolve, reject) => this.#waiting.set(id, { resolve, reject }));
    if (this.#waiting.size === 1) this.#worker.ref();
    this.#worker.postMessage({ id, fd: journal.fd, tempDir, entries });
    return done;
  }

  async close(): Promise<void> {
    if (this.#gone) return;
    this.#worker.ref();
    this.#worker.postMessage({ close: true });
    await this.#exited;
  }

  /** Fails every flush in flight (unknown whether durable: never acknowledged); the next ones run in process. */
  #fail(error: Error): void {
    this.#gone = true;
    for (const waiting of this.#waiting.values()) waiting.reject(error);
    this.#waiting.clear();
  }
}

/** An Error with the file system's code (ENOSPC, EIO…), as node:fs throws it in process. */
function fsError(failure: Failure): Error {
  return Object.assign(new Error(failure.message), failure.code === undefined ? {} : { code: failure.code });
}
