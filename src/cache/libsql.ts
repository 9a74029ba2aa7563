import type { InStatement } from "@libsql/client";
import { type Artifact, type ForkRef, parseThreadJson, type ThreadJson, type ThreadState } from "../model/artifact.ts";
import { type Commit, eventData, type Patch } from "../model/patch.ts";
import {
  type ArtifactCache,
  type CachedContext,
  CacheUnavailableError,
  type EventPage,
  type TargetLookup,
  type ThreadCursor,
} from "./port.ts";
import { ADDED_COLUMNS, SCHEMA } from "./schema.ts";

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
}

/** Patches applied per batch during catch-up (whole commits: a larger commit is a batch of its own). */
const APPLY_CHUNK = 200;

/**
 * The libSQL cache. Each public method is one `batch` (one round trip, one
 * transaction). Writes are guarded so the cache only ever holds a contiguous
 * prefix of the rollout: a patch applies only where the thread row is at seq - 1.
 */
export class LibsqlCache implements ArtifactCache {
  readonly #options: Required<LibsqlCacheOptions>;
  #client: SqlClient | null = null;
  #ready: Promise<SqlClient> | null = null;
  #downUntil = 0;

  constructor(options: LibsqlCacheOptions) {
    this.#options = { callTimeoutMs: 5000, retryAfterMs: 1000, schema: { ready: false }, ...options };
  }

  async apply(tenant: string, commits: readonly Commit[]): Promise<number> {
    let seq = -1;
    for (const chunk of chunksOfCommits(commits, APPLY_CHUNK)) {
      const patches = chunk.flatMap((commit) => commit.patches);
      const statements = patches.flatMap((patch) => applyStatements(tenant, patch));
      statements.push(seqStatement(tenant, (chunk[0] as Commit).threadId));
      const results = await this.#batch(statements, "write");
      seq = seqFrom(results[results.length - 1] as SqlResult);
      // A chunk that did not land (a gap) means the rest cannot either.
      if (seq < (chunk[chunk.length - 1] as Commit).lastSeq) break;
    }
    return seq;
  }

  async install(tenant: string, state: ThreadState): Promise<number> {
    const token = crypto.randomUUID();
    const key = { t: tenant, th: state.threadId };
    // Only the batch whose INSERT created the row (its token) fills it.
    const mine = `(SELECT installer FROM threads WHERE tenant = :t AND thread_id = :th) = :token`;
    const statements: InStatement[] = [
      {
        sql: `INSERT INTO threads (tenant, thread_id, created_at, updated_at, seq, event_floor, installer, forked_from,
                life_start)
              VALUES (:t, :th, :created, :updated, :seq, :seq, :token, :fork, :since) ON CONFLICT DO NOTHING`,
        args: {
          ...key,
          created: state.createdAt,
          updated: state.updatedAt,
          seq: state.seq,
          token,
          fork: forkText(state.forkedFrom),
          since: state.since ?? 0,
        },
      },
      { sql: `DELETE FROM artifacts WHERE tenant = :t AND thread_id = :th AND ${mine}`, args: { ...key, token } },
      ...state.artifacts.map((artifact, index) => ({
        sql:
          `INSERT OR REPLACE INTO artifacts (tenant, thread_id, id, position, artifact_type, identity_key, version, body)
              SELECT :t, :th, :id, :position, :type, :identity, :version, :body WHERE ${mine}`,
        args: { ...key, token, ...artifactArgs(artifact), position: index + 1 },
      })),
      seqStatement(tenant, state.threadId),
    ];
    const results = await this.#batch(statements, "write");
    return seqFrom(results[results.length - 1] as SqlResult);
  }

  async seq(tenant: string, threadId: string): Promise<number> {
    const [result] = await this.#batch([seqStatement(tenant, threadId)], "read");
    return seqFrom(result as SqlResult);
  }

  async readThread(tenant: string, threadId: string): Promise<ThreadState | null> {
    const thread = await this.readThreadJson(tenant, threadId);
    return thread && parseThreadJson(thread);
  }

  async readThreadJson(tenant: string, threadId: string): Promise<ThreadJson | null> {
    const args = { t: tenant, th: threadId };
    // One row: SQLite joins the stored bodies, so neither the client nor we touch them
    // one by one. The order comes from the subquery: SQLite never flattens an ordered
    // subquery into an aggregate, so group_concat sees its rows in position order
    // (`group_concat(... ORDER BY position)` says the same but sorts a copy of every
    // body: ~10× slower on a 4,000-artifact thread).
    const [thread, artifacts] = await this.#batch(
      [
        {
          sql:
            `SELECT created_at, updated_at, seq, forked_from, life_start FROM threads WHERE tenant = :t AND thread_id = :th`,
          args,
        },
        {
          sql: `SELECT '[' || coalesce(group_concat(body, ','), '') || ']' AS list
                FROM (SELECT body FROM artifacts WHERE tenant = :t AND thread_id = :th ORDER BY position)`,
          args,
        },
      ],
      "read",
    );
    const row = thread?.rows[0];
    if (!row) return null;
    return {
      threadId,
      createdAt: String(row.created_at),
      updatedAt: String(row.updated_at),
      seq: Number(row.seq),
      artifactsJson: String(artifacts?.rows[0]?.list ?? "[]"),
      ...forkOf(row),
      ...lifeOf(row),
    };
  }

  async writeContext(tenant: string, threadId: string, lookups: readonly TargetLookup[]): Promise<CachedContext> {
    const args = { t: tenant, th: threadId };
    const statements: InStatement[] = [{
      sql: `SELECT seq, life_start, updated_at FROM threads WHERE tenant = :t AND thread_id = :th`,
      args,
    }, {
      sql: `SELECT count(*) AS n FROM artifacts WHERE tenant = :t AND thread_id = :th`,
      args,
    }];
    // Without an identityKey a create never matches an existing artifact, so there is
    // nothing to look up (a lookup by `identity_key IS NULL` would return every such
    // artifact of the thread, on every create). Each distinct lookup is read once.
    const slots = new Map<string, number>();
    const slotOf = lookups.map((lookup) => {
      const statement = lookupStatement(args, lookup);
      if (!statement) return -1;
      const key = JSON.stringify(statement.args);
      let slot = slots.get(key);
      if (slot === undefined) {
        slot = statements.length;
        slots.set(key, slot);
        statements.push(statement);
      }
      return slot;
    });
    const results = await this.#batch(statements, "read");
    const thread = results[0]?.rows[0];
    const seq = thread ? Number(thread.seq) : 0;
    return {
      seq,
      updatedAt: thread ? String(thread.updated_at) : null,
      ...(thread && Number(thread.life_start) > 0 && Number(thread.life_start) === seq ? { deleted: true } : {}),
      artifactCount: Number(results[1]?.rows[0]?.n ?? 0),
      targets: slotOf.map((slot) => {
        const row = slot < 0 ? undefined : results[slot]?.rows[0];
        return row ? parseBody(row) : null;
      }),
    };
  }

  async getArtifact(
    tenant: string,
    threadId: string,
    artifactId: string,
  ): Promise<{ seq: number; artifact: Artifact | null }> {
    const [seq, found] = await this.#batch(
      [
        seqStatement(tenant, threadId),
        {
          sql: `SELECT body FROM artifacts WHERE tenant = :t AND thread_id = :th AND id = :id`,
          args: { t: tenant, th: threadId, id: artifactId },
        },
      ],
      "read",
    );
    const row = found?.rows[0];
    return { seq: seqFrom(seq as SqlResult), artifact: row ? parseBody(row) : null };
  }

  async listThreads(tenant: string, page: { after: ThreadCursor | null; limit: number }): Promise<ThreadState[]> {
    // A deleted thread (at its tombstone) is listed as if it never existed.
    const after = `AND NOT (life_start > 0 AND seq = life_start)` +
      (page.after ? ` AND (updated_at < :u OR (updated_at = :u AND thread_id < :th))` : "");
    const args = { t: tenant, limit: page.limit, u: page.after?.updatedAt ?? null, th: page.after?.threadId ?? null };
    const pageSql =
      `SELECT thread_id FROM threads WHERE tenant = :t ${after} ORDER BY updated_at DESC, thread_id DESC LIMIT :limit`;
    const [threads, artifacts] = await this.#batch(
      [
        {
          sql:
            `SELECT thread_id, created_at, updated_at, seq, forked_from, life_start FROM threads WHERE tenant = :t ${after}
                ORDER BY updated_at DESC, thread_id DESC LIMIT :limit`,
          args,
        },
        {
          sql:
            `SELECT thread_id, body FROM artifacts WHERE tenant = :t AND thread_id IN (${pageSql}) ORDER BY thread_id, position`,
          args,
        },
      ],
      "read",
    );
    const byThread = new Map<string, Artifact[]>();
    for (const row of (artifacts as SqlResult).rows) {
      const id = String(row.thread_id);
      let list = byThread.get(id);
      if (!list) byThread.set(id, list = []);
      list.push(parseBody(row));
    }
    return (threads as SqlResult).rows.map((row) => ({
      threadId: String(row.thread_id),
      createdAt: String(row.created_at),
      updatedAt: String(row.updated_at),
      seq: Number(row.seq),
      artifacts: byThread.get(String(row.thread_id)) ?? [],
      ...forkOf(row),
      ...lifeOf(row),
    }));
  }

  async events(tenant: string, threadId: string, afterSeq: number, limit: number): Promise<EventPage> {
    const args = { t: tenant, th: threadId, after: afterSeq, limit };
    const [thread, events] = await this.#batch(
      [
        { sql: `SELECT seq, event_floor, life_start FROM threads WHERE tenant = :t AND thread_id = :th`, args },
        {
          sql:
            `SELECT seq, data, event FROM events WHERE tenant = :t AND thread_id = :th AND seq > :after ORDER BY seq LIMIT :limit`,
          args,
        },
      ],
      "read",
    );
    const row = thread?.rows[0];
    return {
      seq: row ? Number(row.seq) : 0,
      floor: row ? Number(row.event_floor) : 0,
      lifeStart: row ? Number(row.life_start) : 0,
      events: (events as SqlResult).rows.map((r) =>
        r.event === "thread-deleted"
          ? { seq: Number(r.seq), data: String(r.data), event: "thread-deleted" as const }
          : { seq: Number(r.seq), data: String(r.data) }
      ),
    };
  }

  async ping(): Promise<void> {
    await this.#batch(["SELECT 1"], "read", { ignoreBreaker: true });
  }

  close(): void {
    this.#client?.close();
    this.#client = null;
    this.#ready = null;
  }

  async #batch(
    statements: InStatement[],
    mode: "read" | "write",
    opts: { ignoreBreaker?: boolean } = {},
  ): Promise<SqlResult[]> {
    if (!opts.ignoreBreaker && Date.now() < this.#downUntil) throw new CacheUnavailableError("recently failed", true);
    try {
      const client = await this.#connected();
      return await withTimeout(client.batch(statements, mode), this.#options.callTimeoutMs);
    } catch (error) {
      // A database recreated behind our back: put the schema in place again next time.
      if (/no such table/i.test(String((error as Error | null)?.message))) {
        this.#options.schema.ready = false;
        this.#ready = null;
      }
      if (isConnectionFailure(error)) {
        this.#downUntil = Date.now() + this.#options.retryAfterMs;
        this.close();
        throw new CacheUnavailableError(error);
      }
      throw error;
    }
  }

  #connected(): Promise<SqlClient> {
    this.#ready ??= this.#migrate().catch((error: unknown) => {
      this.#ready = null;
      throw error;
    });
    return this.#ready;
  }

  async #migrate(): Promise<SqlClient> {
    const client = this.#options.connect();
    this.#client = client;
    if (this.#options.schema.ready) return client;
    if (this.#options.local) {
      // The cache is rebuildable, so WAL with synchronous=NORMAL: the one fsync per
      // write is the rollout's. The WAL is checkpointed (two fsyncs, on the committing
      // call) every 10,000 pages instead of SQLite's 1,000: a create dirties ~8 pages, so
      // that is once per ~1,200 creates rather than ~125 (+15-20% creates/s over 64
      // threads, for a WAL file of up to ~40 MB). All three are connection settings; the
      // client holds a single connection so they hold for every call.
      await withTimeout(client.execute("PRAGMA journal_mode = WAL"), this.#options.callTimeoutMs);
      await withTimeout(client.execute("PRAGMA synchronous = NORMAL"), this.#options.callTimeoutMs);
      await withTimeout(client.execute("PRAGMA wal_autocheckpoint = 10000"), this.#options.callTimeoutMs);
    }
    await withTimeout(client.batch([...SCHEMA], "write"), this.#options.callTimeoutMs);
    await withTimeout(addColumns(client), this.#options.callTimeoutMs);
    if (!this.#options.local) this.#options.schema.ready = true;
    return client;
  }
}

/**
 * Columns added after a table's first layout, for caches made before them: added if
 * missing (a statement of its own: a "duplicate column" refusal must not undo the schema batch).
 */
async function addColumns(client: SqlClient): Promise<void> {
  // One read for every table's columns; an ALTER only for a cache that lacks one.
  const tables = [...new Set(ADDED_COLUMNS.map((c) => c.table))];
  const results = await client.batch(
    tables.map((table) => ({ sql: `SELECT name FROM pragma_table_info(:table)`, args: { table } })),
    "read",
  );
  const present = new Set(
    results.flatMap((result, i) => result.rows.map((row) => `${tables[i]}.${String(row.name)}`)),
  );
  for (const { table, column, sql } of ADDED_COLUMNS) {
    if (!present.has(`${table}.${column}`)) await client.execute(sql);
  }
}

/** Whole commits in batches of about `size` patches. */
function chunksOfCommits(commits: readonly Commit[], size: number): Commit[][] {
  const chunks: Commit[][] = [];
  let current: Commit[] = [];
  let patches = 0;
  for (const commit of commits) {
    if (current.length > 0 && patches + commit.patches.length > size) {
      chunks.push(current);
      current = [];
      patches = 0;
    }
    current.push(commit);
    patches += commit.patches.length;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/** A fork's origin as the threads row stores it (JSON), or null. */
function forkText(fork: ForkRef | undefined): string | null {
  return fork ? JSON.stringify({ threadId: fork.threadId, seq: fork.seq }) : null;
}

/** `deleted` and `since` of a threads row (a thread never deleted has neither). */
function lifeOf(row: Record<string, unknown>): { deleted?: true; since?: number } {
  const since = Number(row.life_start ?? 0);
  if (!(since > 0)) return {};
  return Number(row.seq) === since ? { deleted: true, since } : { since };
}

function forkOf(row: Record<string, unknown>): { forkedFrom?: ForkRef } {
  const text = row.forked_from;
  if (typeof text !== "string") return {};
  const fork = JSON.parse(text) as ForkRef;
  return { forkedFrom: { threadId: fork.threadId, seq: fork.seq } };
}

function applyStatements(tenant: string, patch: Patch): InStatement[] {
  const key = { t: tenant, th: patch.threadId, seq: patch.seq };
  const guard = `(SELECT seq FROM threads WHERE tenant = :t AND thread_id = :th) = :seq`;
  if (patch.op === "delete") {
    // The end of a life: the row stays as the tombstone (seq = life_start), nothing else of
    // the thread. It applies on top of any earlier seq, or of no row at all: a cache that
    // missed the end of a life (the life's commits are stubs by then) goes straight to it.
    return [
      {
        sql:
          `INSERT INTO threads (tenant, thread_id, created_at, updated_at, seq, life_start) VALUES (:t, :th, :at, :at, :seq, :seq)
              ON CONFLICT (tenant, thread_id) DO UPDATE SET seq = :seq, updated_at = :at, installer = NULL, life_start = :seq,
                forked_from = NULL
              WHERE threads.seq < :seq`,
        args: { ...key, at: patch.at },
      },
      { sql: `DELETE FROM artifacts WHERE tenant = :t AND thread_id = :th AND ${guard}`, args: key },
      { sql: `DELETE FROM events WHERE tenant = :t AND thread_id = :th AND seq < :seq AND ${guard}`, args: key },
      {
        sql: `INSERT OR IGNORE INTO events (tenant, thread_id, seq, data, event)
              SELECT :t, :th, :seq, :data, 'thread-deleted' WHERE ${guard}`,
        args: { ...key, data: eventData(patch) },
      },
    ];
  }
  const fork = forkText(patch.fork);
  const statements: InStatement[] = [
    {
      // The first patch after a tombstone starts a new life: its createdAt, and a fork's origin.
      sql: `UPDATE threads SET seq = :seq, updated_at = :at, installer = NULL,
              created_at = CASE WHEN life_start > 0 AND seq = life_start THEN :at ELSE created_at END,
              forked_from = coalesce(:fork, forked_from)
            WHERE tenant = :t AND thread_id = :th AND seq = :seq - 1`,
      args: { ...key, at: patch.at, fork },
    },
  ];
  if (patch.seq === 1) {
    statements.push({
      sql:
        `INSERT INTO threads (tenant, thread_id, created_at, updated_at, seq, forked_from) VALUES (:t, :th, :at, :at, 1, :fork) ON CONFLICT DO NOTHING`,
      args: { t: tenant, th: patch.threadId, at: patch.at, fork },
    });
  }
  // Every statement below is guarded by the thread row now being at this seq, and is
  // idempotent, so re-applying the head patch changes nothing and a gap applies nothing.
  if (patch.op === "remove") {
    statements.push({
      sql: `DELETE FROM artifacts WHERE tenant = :t AND thread_id = :th AND id = :id AND ${guard}`,
      args: { ...key, id: patch.artifact.id },
    });
  } else {
    statements.push({
      sql: `INSERT INTO artifacts (tenant, thread_id, id, position, artifact_type, identity_key, version, body)
            SELECT :t, :th, :id, :seq, :type, :identity, :version, :body WHERE ${guard}
            ON CONFLICT (tenant, thread_id, id) DO UPDATE SET version = excluded.version, body = excluded.body`,
      args: { ...key, ...artifactArgs(patch.artifact) },
    });
  }
  statements.push({
    sql: `INSERT OR IGNORE INTO events (tenant, thread_id, seq, data) SELECT :t, :th, :seq, :data WHERE ${guard}`,
    args: { ...key, data: eventData(patch) },
  });
  return statements;
}

function lookupStatement(
  args: { t: string; th: string },
  lookup: TargetLookup,
): { sql: string; args: Record<string, string> } | null {
  if (lookup.by === "id") {
    return {
      sql: `SELECT body FROM artifacts WHERE tenant = :t AND thread_id = :th AND id = :id`,
      args: { ...args, id: lookup.artifactId },
    };
  }
  if (lookup.identityKey === null) return null;
  return {
    sql:
      `SELECT body FROM artifacts WHERE tenant = :t AND thread_id = :th AND artifact_type = :type AND identity_key = :identity`,
    args: { ...args, type: lookup.artifactType, identity: lookup.identityKey },
  };
}

function artifactArgs(artifact: Artifact) {
  return {
    id: artifact.id,
    type: artifact.artifactType,
    identity: artifact.identityKey,
    version: artifact.version,
    body: JSON.stringify(artifact),
  };
}

function seqStatement(tenant: string, threadId: string): InStatement {
  return { sql: `SELECT seq FROM threads WHERE tenant = :t AND thread_id = :th`, args: { t: tenant, th: threadId } };
}

function seqFrom(result: SqlResult): number {
  const row = result.rows[0];
  return row ? Number(row.seq) : 0;
}

function parseBody(row: Record<string, unknown>): Artifact {
  return JSON.parse(String(row.body)) as Artifact;
}

/**
 * Anything but a constraint or SQL error means libSQL is unreachable or unusable
 * right now; SQL errors are bugs and must surface, not be hidden as "down".
 */
function isConnectionFailure(error: unknown): boolean {
  if (error instanceof CacheUnavailableError || error instanceof CallTimeoutError) return true;
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

class CallTimeoutError extends Error {
  constructor(ms: number) {
    super(`libSQL call took longer than ${ms} ms`);
    this.name = "CallTimeoutError";
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CallTimeoutError(ms)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
