/**
 * A libSQL file's writes run on a worker thread (Node): the connection there keeps its
 * statements prepared and runs each write batch as one transaction, as `LibsqlFileClient`
 * does on the main thread; reads stay on the main thread's own connection.
 *
 * Why: the binding is synchronous, and a turn's batch of cache applies (16 creates over
 * 64 threads: ~1 ms) blocked the event loop, so every request in flight, and the
 * journal's flush that answers them, waited for it. On the worker it runs beside the
 * loop; the caller still waits for its commit (a `consistency=cache` read after a 2xx
 * sees the write), but nobody else does.
 *
 * The worker runs a script given as source (`eval`), like the WAL checkpointer: no second
 * module graph to load through the TypeScript loader, and the same native binding as the
 * main thread (one SQLite library per process, which SQLite's locking between the
 * connections of one process relies on).
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type { InStatement } from "@libsql/client";
import type { SqlResult } from "../cache/libsql.ts";
import { libsqlError } from "./libsql-errors.ts";

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.binding);
let db;
const prepared = new Map();
function prepare(sql) {
  let entry = prepared.get(sql);
  if (!entry) {
    const statement = db.prepare(sql);
    entry = { statement, reader: statement.reader };
    if (prepared.size >= ${256}) prepared.clear();
    prepared.set(sql, entry);
  }
  return entry;
}
function run(statement) {
  const sql = typeof statement === "string" ? statement : statement.sql;
  const args = typeof statement === "string" ? undefined : statement.args;
  const { statement: stmt, reader } = prepare(sql);
  const bound = args === undefined ? [] : [args];
  if (reader) return { rows: stmt.all(...bound) };
  stmt.run(...bound);
  return { rows: [] };
}
function batch(statements, mode) {
  run(mode === "write" ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED");
  try {
    const results = statements.map(run);
    run("COMMIT");
    return results;
  } catch (error) {
    try { if (db.inTransaction) run("ROLLBACK"); } catch {}
    throw error;
  }
}
function failure(error) {
  return { message: String((error && error.message) || error), code: error && typeof error.code === "string" ? error.code : undefined };
}
try {
  db = new Database(workerData.path, { timeout: workerData.busyTimeoutMs });
} catch (error) {
  parentPort.postMessage({ id: 0, error: failure(error) });
}
parentPort.on("message", (message) => {
  if (message.close) {
    if (db && db.open) db.close();
    parentPort.close();
    return;
  }
  if (!db) return parentPort.postMessage({ id: message.id, error: { message: "the database did not open" } });
  try {
    const value = message.batch ? batch(message.batch, message.mode) : run(message.execute);
    parentPort.postMessage({ id: message.id, value });
  } catch (error) {
    parentPort.postMessage({ id: message.id, error: failure(error) });
  }
});
`;

type FromWorker =
  | { id: number; value: SqlResult | SqlResult[]; error?: undefined }
  | { id: number; error: { message: string; code?: string } };

interface Waiting {
  resolve: (value: SqlResult | SqlResult[]) => void;
  reject: (error: unknown) => void;
}

/** The write connection, on its worker thread; calls run one at a time there, in the order made. */
export class LibsqlWriterWorker {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, Waiting>();
  readonly #exited: Promise<void>;
  #calls = 0;
  #gone: Error | null = null;

  constructor(path: string, options: { busyTimeoutMs: number }) {
    const binding = createRequire(import.meta.url).resolve("libsql");
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { binding, path, busyTimeoutMs: options.busyTimeoutMs },
    });
    this.#worker.on("message", (message: FromWorker) => {
      if (message.id === 0 && message.error) return this.#fail(sqliteError(message.error));
      const waiting = this.#waiting.get(message.id);
      if (!waiting) return;
      this.#waiting.delete(message.id);
      if (this.#waiting.size === 0) this.#worker.unref();
      if (message.error) waiting.reject(sqliteError(message.error));
      else waiting.resolve(message.value);
    });
    // A worker that dies fails what it was asked, and everything after: the connection
    // counts as down (no SQLite code), and the cache opens a new client after its pause.
    this.#worker.on("error", (error: Error) => this.#fail(error));
    this.#exited = new Promise((resolve) =>
      this.#worker.once("exit", () => {
        this.#fail(new Error("the libSQL writer's thread exited"));
        resolve();
      })
    );
    // Only a call in flight keeps the process alive (its caller may be all there is: a
    // shutdown waiting for the last writes), an idle thread never.
    this.#worker.unref();
  }

  batch(statements: InStatement[], mode: "read" | "write"): Promise<SqlResult[]> {
    return this.#call({ batch: statements, mode }) as Promise<SqlResult[]>;
  }

  execute(statement: InStatement): Promise<SqlResult> {
    return this.#call({ execute: statement }) as Promise<SqlResult>;
  }

  /** Closes the worker's connection; resolves once its thread has exited. */
  close(): Promise<void> {
    this.#fail(new Error("the libSQL writer is closed"));
    this.#worker.postMessage({ close: true });
    return this.#exited;
  }

  #call(message: { batch: InStatement[]; mode: "read" | "write" } | { execute: InStatement }) {
    if (this.#gone) return Promise.reject(this.#gone);
    const id = ++this.#calls;
    return new Promise<SqlResult | SqlResult[]>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      if (this.#waiting.size === 1) this.#worker.ref();
      this.#worker.postMessage({ id, ...message });
    });
  }

  #fail(error: Error): void {
    this.#gone ??= error;
    for (const waiting of this.#waiting.values()) waiting.reject(error);
    this.#waiting.clear();
  }
}

/** The worker's error as the main thread's connection reports its own (libsql-errors.ts). */
function sqliteError(error: { message: string; code?: string }): Error {
  return libsqlError(error.message, error.code) ?? new Error(error.message);
}
