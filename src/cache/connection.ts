import type { InStatement } from "@libsql/client";
import { DeadlineError, withDeadline } from "../model/deadline.ts";
import { CacheUnavailableError } from "./port.ts";
import { migrate } from "./schema.ts";

/** One statement's rows, by column name (a write's are empty). */
export interface SqlResult {
  rows: Record<string, unknown>[];
}

/**
 * The slice of a libSQL client the cache uses: @libsql/client's `Client` (HTTP, Turso,
 * web) satisfies it, and so does the prepared-statement file client of Node and Deno.
 * `batch` runs its statements in one transaction.
 */
export interface SqlClient {
  batch(statements: InStatement[], mode: "read" | "write"): Promise<SqlResult[]>;
  execute(statement: InStatement): Promise<unknown>;
  close(): void;
}

export interface LibsqlCacheOptions {
  /** Opens the client; called lazily, and again after a failure, so boot never waits on libSQL. */
  connect: () => SqlClient;
  /** Whether the URL is a local file: only then do file PRAGMAs apply. */
  local: boolean;
  /** A call slower than this counts as the cache being down (ms). */
  callTimeoutMs?: number;
  /** After a failure, calls fail fast for this long before libSQL is tried again (ms). */
  retryAfterMs?: number;
  /**
   * Shared by caches of one isolate that are built per request (Workers): once one of
   * them has put the schema in place, the others skip that round trip.
   */
  schema?: { ready: boolean };
  /** The schema found was another version's and was replaced: the cache is empty now (rebuild it). */
  onReset?: () => void;
}

type ConnectionOptions = Required<LibsqlCacheOptions>;

/**
 * The cache's way to libSQL: a lazily opened client with the schema in place, a deadline
 * on every call, and a breaker: a call that fails for want of libSQL (not a SQL error)
 * makes the next ones fail fast for a moment, as CacheUnavailableError.
 */
export class LibsqlConnection {
  readonly #o: ConnectionOptions;
  #client: SqlClient | null = null;
  #ready: Promise<SqlClient> | null = null;
  #downUntil = 0;

  constructor(options: ConnectionOptions) {
    this.#o = options;
  }

  /** One batch: one round trip, one transaction. */
  async batch(
    statements: InStatement[],
    mode: "read" | "write",
    opts: { ignoreBreaker?: boolean } = {},
  ): Promise<SqlResult[]> {
    if (!opts.ignoreBreaker && Date.now() < this.#downUntil) throw new CacheUnavailableError("recently failed", true);
    try {
      const client = await this.#connected();
      return await withDeadline(client.batch(statements, mode), this.#o.callTimeoutMs, "libSQL call");
    } catch (error) {
      // A database recreated behind our back: put the schema in place again next time.
      if (/no such table/i.test(String((error as Error | null)?.message))) {
        this.#o.schema.ready = false;
        this.#ready = null;
      }
      if (isConnectionFailure(error)) {
        this.#downUntil = Date.now() + this.#o.retryAfterMs;
        this.close();
        throw new CacheUnavailableError(error);
      }
      throw error;
    }
  }

  close(): void {
    this.#client?.close();
    this.#client = null;
    this.#ready = null;
  }

  #connected(): Promise<SqlClient> {
    this.#ready ??= this.#open().catch((error: unknown) => {
      this.#ready = null;
      throw error;
    });
    return this.#ready;
  }

  async #open(): Promise<SqlClient> {
    const client = this.#o.connect();
    this.#client = client;
    if (this.#o.schema.ready) return client;
    const { reset } = await migrate(client, {
      local: this.#o.local,
      deadline: <T>(call: Promise<T>) => withDeadline(call, this.#o.callTimeoutMs, "libSQL call"),
    });
    if (!this.#o.local) this.#o.schema.ready = true;
    if (reset) this.#o.onReset();
    return client;
  }
}

/**
 * Anything but a constraint or SQL error means libSQL is unreachable or unusable
 * right now; SQL errors are bugs and must surface, not be hidden as "down".
 */
function isConnectionFailure(error: unknown): boolean {
  if (error instanceof CacheUnavailableError || error instanceof DeadlineError) return true;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code !== "string" || !SQL_ERROR_CODES.has(code);
}

/**
 * SQL errors as each client reports them: the native client gives SQLite's primary code;
 * over HTTP (Hrana, sqld/Turso) a statement SQLite refuses to prepare ("no such table",
 * "no such column") is SQL_INPUT_ERROR, and statement/argument mismatches have codes of their own.
 */
const SQL_ERROR_CODES = new Set([
  "SQLITE_CONSTRAINT",
  "SQLITE_ERROR",
  "SQL_PARSE_ERROR",
  "SQL_INPUT_ERROR",
  "SQL_NO_STATEMENT",
  "SQL_MANY_STATEMENTS",
  "ARGS_INVALID",
  "ARGS_BOTH_POSITIONAL_AND_NAMED",
]);
