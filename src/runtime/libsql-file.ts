/**
 * A libSQL file opened with the native `libsql` binding directly, for the cache of
 * Node and Deno processes (`file:` URLs). It speaks the slice of @libsql/client the
 * cache uses (`batch`, `execute`, `close`) and keeps every statement prepared:
 * @libsql/client prepares each statement anew on every call and probes writes with a
 * `raw()` that throws, which together cost more CPU than the SQL itself on the write
 * path (profiled: about a third of a create's main-thread time). The binding is
 * synchronous, like every local SQLite call in Node: one connection, one call at a time;
 * with `writesOnWorker` (the Node server) the writes go to a connection on a worker
 * thread (libsql-writer.ts), so they never hold the event loop.
 */
import type { InStatement } from "@libsql/client";
import Database from "libsql";
import type { SqlClient, SqlResult } from "../cache/libsql.ts";
import { type CheckpointPass, WalCheckpointer } from "./wal-checkpointer.ts";
import { libsqlError } from "./libsql-errors.ts";
import { LibsqlWriterWorker } from "./libsql-writer.ts";

/** Statements kept prepared at most: the cache has a few dozen distinct SQL texts. */
const MAX_PREPARED = 256;

type Prepared = Database.Statement<unknown[]>;

export interface LibsqlFileOptions {
  /** How long a writer waits for another process's write lock before failing with SQLITE_BUSY (ms). */
  busyTimeoutMs: number;
  /**
   * Checkpoint the WAL from a worker thread every this many ms (Node: wal-checkpointer.ts);
   * absent, only the connection's own checkpoints run, on the committing call.
   */
  checkpointEveryMs?: number;
  /** Told of each of the worker's passes (tests). */
  onCheckpoint?: (pass: CheckpointPass) => void;
  /**
   * Writes (`batch(…, "write")`, `execute`) on a connection of their own in a worker
   * thread (Node: libsql-writer.ts); reads stay on this thread's connection.
   */
  writesOnWorker?: boolean;
}

export class LibsqlFileClient implements SqlClient {
  readonly #db: Database.Database;
  readonly #prepared = new Map<string, { statement: Prepared; reader: boolean }>();
  readonly #checkpointer: WalCheckpointer | null;
  readonly #writer: LibsqlWriterWorker | null;
  #closed: Promise<void> = Promise.resolve();

  constructor(path: string, options: LibsqlFileOptions) {
    this.#db = wrapErrors(() => new Database(path, { timeout: options.busyTimeoutMs }));
    this.#checkpointer = options.checkpointEveryMs === undefined ? null : new WalCheckpointer({
      path,
      everyMs: options.checkpointEveryMs,
      busyTimeoutMs: options.busyTimeoutMs,
      ...(options.onCheckpoint ? { onPass: options.onCheckpoint } : {}),
    });
    this.#writer = options.writesOnWorker ? new LibsqlWriterWorker(path, options) : null;
  }

  async execute(statement: InStatement): Promise<SqlResult> {
    if (this.#writer) return this.#writer.execute(statement);
    return wrapErrors(() => this.#run(statement));
  }

  /** All statements in one transaction (`write`: BEGIN IMMEDIATE, so the write lock is taken up front). */
  async batch(statements: InStatement[], mode: "read" | "write"): Promise<SqlResult[]> {
    if (this.#writer && mode === "write") return this.#writer.batch(statements, mode);
    return wrapErrors(() => {
      this.#run(mode === "write" ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED");
      try {
        const results = statements.map((statement) => this.#run(statement));
        this.#run("COMMIT");
        return results;
      } catch (error) {
        try {
          if (this.#db.inTransaction) this.#run("ROLLBACK");
        } catch {
          // The error that matters is the one that got us here.
        }
        throw error;
      }
    });
  }

  /** Resolves once everything `close` ended has ended (the checkpointer's worker). */
  get closed(): Promise<void> {
    return this.#closed;
  }

  /** A checkpoint pass of the worker's now (null without one): tests. */
  checkpointNow(): Promise<CheckpointPass> | null {
    return this.#checkpointer?.now() ?? null;
  }

  /** Closes the connection; the checkpointer's worker closes its own and exits (`closed` resolves then). */
  close(): void {
    this.#closed = Promise.all([this.#checkpointer?.close(), this.#writer?.close()]).then(() => {});
    this.#prepared.clear();
    if (this.#db.open) this.#db.close();
  }

  #run(statement: InStatement): SqlResult {
    const { sql, args } = typeof statement === "string" ? { sql: statement, args: undefined } : statement;
    const { statement: prepared, reader } = this.#prepare(sql);
    const bound = args === undefined ? [] : [args];
    if (reader) return { rows: prepared.all(...bound) as Record<string, unknown>[] };
    prepared.run(...bound);
    return { rows: [] };
  }

  #prepare(sql: string): { statement: Prepared; reader: boolean } {
    let entry = this.#prepared.get(sql);
    if (!entry) {
      const statement = this.#db.prepare(sql);
      entry = { statement, reader: statement.reader };
      if (this.#prepared.size >= MAX_PREPARED) this.#prepared.clear();
      this.#prepared.set(sql, entry);
    }
    return entry;
  }
}

/** The binding's SQLite errors as @libsql/client reports them (libsql-errors.ts); anything else as thrown. */
function wrapErrors<T>(call: () => T): T {
  try {
    return call();
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    throw libsqlError(String((error as Error | null)?.message), code, error) ?? error;
  }
}
