/**
 * A small Hrana-over-HTTP server (the protocol sqld / Turso speak) over a libSQL file,
 * for tests of `@libsql/client/web` and of the cache over HTTP.
 *
 * What `@libsql/client` 0.18 actually does (lib-esm/http.js + @libsql/hrana-client 0.10):
 * `openHttp(url, jwt)` defaults to protocol version 2, so the client never probes a
 * version: it POSTs JSON to `/v2/pipeline` straight away. Every `execute`/`batch` opens a
 * stream and pipelines everything (`store_sql` for each distinct SQL text, the request,
 * `close`) into one HTTP request; `transaction()` keeps a stream across requests with the
 * baton. A v3 client would probe `GET /v3-protobuf` (here 404, we speak JSON only) and fall
 * back to v2; `GET /v2` and `GET /v3` answer 200 like sqld, and `/v3/pipeline` and
 * `/v3/cursor` speak JSON v3 (`get_autocommit`, the `is_autocommit` condition).
 *
 * Semantics follow libsql-server (src/hrana): one connection per stream, so a batch's
 * BEGIN..COMMIT and an interactive transaction stay on one connection; a fresh baton per
 * response, an old one is refused (400); idle streams expire (then 500 STREAM_EXPIRED) and
 * their connection is rolled back and closed; protocol errors are HTTP 400 and end the
 * stream; SQL errors are Hrana errors (`SQL_PARSE_ERROR`, `SQL_INPUT_ERROR` for prepare-time
 * errors such as "no such table", else the primary `SQLITE_*` code, `SQL_NO_STATEMENT`,
 * `SQL_MANY_STATEMENTS`, `ARGS_INVALID`, `ARGS_BOTH_POSITIONAL_AND_NAMED`). affected_row_count
 * counts only INSERT/UPDATE/DELETE/REPLACE and last_insert_rowid is set only for INSERT, as
 * sqld does.
 *
 * Known differences from sqld: a syntax error is found when its step runs (sqld's parser
 * rejects the whole batch before running any step); `rows_read`/`rows_written` are
 * approximations (rows returned / rows changed: libsql-js has no statement counters);
 * `is_readonly` in `describe` is derived from the statement's EXPLAIN program; error
 * messages have no "(at offset N)". libsql-js is synchronous, so a statement waiting on a
 * lock (busy_timeout) blocks this process: a second writer while another stream holds an
 * interactive write transaction in the same server waits busy_timeout, then SQLITE_BUSY.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import Database from "libsql";

export interface HranaServerOptions {
  /** The libSQL/SQLite file (created if missing). */
  path: string;
  /** 0 / absent: an ephemeral port. */
  port?: number;
  /** If set, POST requests need `Authorization: Bearer <authToken>` (else 401). */
  authToken?: string;
  /** busy_timeout of every connection (ms). Default 5000. */
  busyTimeoutMs?: number;
  /** A stream unused this long is expired: its transaction rolled back, its connection closed (ms). Default 10000, as sqld. */
  streamExpiryMs?: number;
}

export interface HranaServer {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  /** HTTP requests received so far (any path). */
  readonly requests: number;
  /** Streams alive (each with at most one connection). */
  readonly openStreams: number;
  /** libSQL connections open now. */
  readonly openConnections: number;
  /** Expires every idle stream now, as if its expiry timer had fired. */
  expireIdleStreams(): void;
  /** Stops listening, drops client sockets, rolls back and closes every connection. Idempotent. */
  close(): Promise<void>;
}

type Db = Database.Database;
type Stmt = Database.Statement;
type BindValue = null | bigint | number | string | Buffer;
type Args = BindValue[] | Record<string, BindValue>;
type Version = 2 | 3;

type HranaValue =
  | { type: "null" }
  | { type: "integer"; value: string }
  | { type: "float"; value: number }
  | { type: "text"; value: string }
  | { type: "blob"; base64: string };

interface HranaErrorBody {
  message: string;
  code: string;
}

interface StmtResult {
  cols: { name: string; decltype: string | null }[];
  rows: HranaValue[][];
  affected_row_count: number;
  last_insert_rowid: string | null;
  rows_read: number;
  rows_written: number;
  query_duration_ms: number;
}

type Cond =
  | { type: "ok" | "error"; step: number }
  | { type: "not"; cond: Cond }
  | { type: "and" | "or"; conds: Cond[] }
  | { type: "is_autocommit" };

/** A malformed or out-of-order request: HTTP 400, and the stream is gone. */
class ProtocolError extends Error {}

/** A request that failed cleanly: a Hrana error result, the stream lives on. */
class HranaError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
  toBody(): HranaErrorBody {
    return { message: this.message, code: this.code };
  }
}

class StreamExpiredError extends Error {}

const EXPIRED_MEMORY_MS = 5 * 60_000;
const MAX_STORED_SQL = 50;
const MAX_STORED_SQL_BYTES = 5000;
const MAX_BODY_BYTES = 64 * 1024 * 1024;

interface Stream {
  id: string;
  /** The seq the next baton must carry. */
  seq: number;
  conn: Conn | null;
  closed: boolean;
  sqls: Map<number, string>;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export async function startHranaServer(options: HranaServerOptions): Promise<HranaServer> {
  const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
  const streamExpiryMs = options.streamExpiryMs ?? 10_000;
  const streams = new Map<string, Stream>();
  const expired = new Map<string, number>();
  const connections = new Set<Conn>();
  let requests = 0;
  let closing: Promise<void> | null = null;

  // WAL like sqld; persistent in the file, so set once.
  const setup = new Database(options.path);
  try {
    setup.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
    setup.prepare("PRAGMA journal_mode = WAL").raw(true).all();
  } finally {
    setup.close();
  }

  const openConn = (): Conn => {
    const conn = new Conn(options.path, busyTimeoutMs, () => connections.delete(conn));
    connections.add(conn);
    return conn;
  };

  const closeStream = (stream: Stream) => {
    clearTimeout(stream.timer);
    stream.closed = true;
    stream.conn?.close();
    stream.conn = null;
    streams.delete(stream.id);
  };

  const expire = (stream: Stream) => {
    closeStream(stream);
    expired.set(stream.id, Date.now());
  };

  const acquire = (baton: unknown): Stream => {
    const now = Date.now();
    for (const [id, at] of expired) if (now - at > EXPIRED_MEMORY_MS) expired.delete(id);
    if (baton === undefined || baton === null) {
      const stream: Stream = {
        id: randomBytes(12).toString("hex"),
        seq: randomBytes(4).readUInt32BE(0),
        conn: null,
        closed: false,
        sqls: new Map(),
        timer: undefined,
      };
      streams.set(stream.id, stream);
      return stream;
    }
    if (typeof baton !== "string") throw new ProtocolError("The baton must be a string");
    const [id = "", seqText = "", ...rest] = baton.split(".");
    if (rest.length > 0 || !/^\d+$/.test(seqText)) throw new ProtocolError("The baton is invalid");
    if (expired.has(id)) throw new StreamExpiredError("The stream has expired due to inactivity");
    const stream = streams.get(id);
    if (!stream) throw new ProtocolError("The baton is invalid");
    if (stream.seq !== Number(seqText)) throw new ProtocolError("The baton has already been used");
    clearTimeout(stream.timer);
    stream.seq = (stream.seq + 1) % 2 ** 32;
    return stream;
  };

  /** The baton for the next request, or null once the stream is closed. */
  const release = (stream: Stream): string | null => {
    if (stream.closed) return null;
    stream.timer = setTimeout(() => expire(stream), streamExpiryMs);
    stream.timer.unref();
    return `${stream.id}.${stream.seq}`;
  };

  const dbOf = (stream: Stream): Conn => {
    if (stream.closed) throw new ProtocolError("The stream has been closed");
    stream.conn ??= openConn();
    return stream.conn;
  };

  const handleStreamRequest = (stream: Stream, request: unknown, version: Version): unknown => {
    const req = object(request, "stream request");
    switch (req.type) {
      case "close":
        closeStream(stream);
        return { type: "close" };
      case "execute": {
        const stmt = prepareStmt(object(req.stmt, "stmt"), stream.sqls);
        return { type: "execute", result: dbOf(stream).run(stmt) };
      }
      case "batch": {
        const steps = prepareBatch(object(req.batch, "batch"), stream.sqls, version);
        return { type: "batch", result: runBatch(dbOf(stream), steps) };
      }
      case "sequence": {
        const sql = sqlOf(req, stream.sqls);
        const conn = dbOf(stream);
        for (const text of splitStatements(sql)) conn.run({ sql: text, args: [], wantRows: false });
        return { type: "sequence" };
      }
      case "describe":
        return { type: "describe", result: dbOf(stream).describe(singleStatement(sqlOf(req, stream.sqls))) };
      case "store_sql": {
        const sqlId = integer(req.sql_id, "sql_id");
        if (typeof req.sql !== "string") throw new ProtocolError("store_sql needs a string `sql`");
        if (stream.sqls.has(sqlId)) throw new ProtocolError(`SQL text ${sqlId} is already stored`);
        if (stream.sqls.size >= MAX_STORED_SQL) {
          throw new HranaError(
            "SQL_STORE_TOO_MANY",
            `The server already stores ${stream.sqls.size} SQL texts, it cannot store more`,
          );
        }
        const bytes = Buffer.byteLength(req.sql);
        if (bytes > MAX_STORED_SQL_BYTES) {
          throw new HranaError("SQL_STORE_TOO_LARGE", `The statement is too large to be stored: ${bytes} B`);
        }
        stream.sqls.set(sqlId, req.sql);
        return { type: "store_sql" };
      }
      case "close_sql":
        stream.sqls.delete(integer(req.sql_id, "sql_id"));
        return { type: "close_sql" };
      case "get_autocommit":
        if (version < 3) {
          throw new ProtocolError("The `get_autocommit` request is supported only on protocol version 3 and higher");
        }
        return { type: "get_autocommit", is_autocommit: dbOf(stream).isAutocommit() };
      default:
        throw new ProtocolError(`Unknown stream request type ${JSON.stringify(req.type)}`);
    }
  };

  const pipeline = (body: unknown, version: Version): { status: number; body: unknown } => {
    const reqBody = object(body, "pipeline request body");
    if (!Array.isArray(reqBody.requests)) throw new ProtocolError("`requests` must be an array");
    const stream = acquire(reqBody.baton);
    try {
      const results = reqBody.requests.map((request: unknown) => {
        try {
          return { type: "ok", response: handleStreamRequest(stream, request, version) };
        } catch (error) {
          if (error instanceof HranaError) return { type: "error", error: error.toBody() };
          throw error;
        }
      });
      return { status: 200, body: { baton: release(stream), base_url: null, results } };
    } catch (error) {
      closeStream(stream);
      throw error;
    }
  };

  /** `/v3/cursor`: the batch's entries as newline-delimited JSON after a `{baton, base_url}` line. */
  const cursor = (body: unknown): string => {
    const reqBody = object(body, "cursor request body");
    const stream = acquire(reqBody.baton);
    try {
      const steps = prepareBatch(object(reqBody.batch, "batch"), stream.sqls, 3);
      const conn = dbOf(stream);
      const entries: unknown[] = [];
      const outcomes: Outcome[] = [];
      steps.forEach((step, i) => {
        if (step.condition && !evalCond(step.condition, outcomes, conn)) {
          outcomes.push("skipped");
          return;
        }
        try {
          const result = conn.run(step.stmt);
          entries.push({ type: "step_begin", step: i, cols: result.cols });
          for (const row of result.rows) entries.push({ type: "row", row });
          entries.push({
            type: "step_end",
            affected_row_count: result.affected_row_count,
            last_insert_rowid: result.last_insert_rowid,
          });
          outcomes.push("ok");
        } catch (error) {
          if (!(error instanceof HranaError)) throw error;
          entries.push({ type: "step_error", step: i, error: error.toBody() });
          outcomes.push("error");
        }
      });
      const head = { baton: release(stream), base_url: null };
      return [head, ...entries].map((entry) => `${JSON.stringify(entry)}\n`).join("");
    } catch (error) {
      closeStream(stream);
      throw error;
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? "/", "http://127.0.0.1").pathname.replace(/\/+$/, "") || "/";
    const route = ROUTES[path];
    if (!route) return send(res, 404, "text/plain", `Not found: ${path}`);
    if (route.method !== req.method) return send(res, 405, "text/plain", `Use ${route.method} for ${path}`);
    if (route.method === "GET") return send(res, 200, "text/plain", "Hello, this is HTTP API v2 (Hrana over HTTP)");
    if (options.authToken !== undefined && req.headers.authorization !== `Bearer ${options.authToken}`) {
      await drain(req);
      return send(res, 401, "text/plain", "Unauthorized: a valid `Authorization: Bearer <token>` header is required");
    }
    let body: unknown;
    try {
      body = JSON.parse(await readBody(req));
    } catch (error) {
      return send(res, 400, "text/plain", `Could not read the JSON request body: ${(error as Error).message}`);
    }
    if (closing) return send(res, 503, "text/plain", "The server is shutting down");
    try {
      if (route.kind === "cursor") return send(res, 200, "text/plain", cursor(body));
      const out = pipeline(body, route.version);
      return send(res, out.status, "application/json", JSON.stringify(out.body));
    } catch (error) {
      if (error instanceof ProtocolError) return send(res, 400, "text/plain", error.message);
      if (error instanceof StreamExpiredError) {
        return send(res, 500, "application/json", JSON.stringify({ message: error.message, code: "STREAM_EXPIRED" }));
      }
      throw error;
    }
  };

  const server = createServer((req, res) => {
    requests++;
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) {
        send(res, 500, "text/plain", `Internal error: ${(error as Error)?.message ?? String(error)}`);
      } else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get requests() {
      return requests;
    },
    get openStreams() {
      return streams.size;
    },
    get openConnections() {
      return connections.size;
    },
    expireIdleStreams() {
      for (const stream of [...streams.values()]) expire(stream);
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        // Connections first: an open write transaction must release the file now.
        for (const stream of [...streams.values()]) closeStream(stream);
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

const ROUTES: Record<string, { method: "GET" } | { method: "POST"; kind: "pipeline" | "cursor"; version: Version }> = {
  "/": { method: "GET" },
  "/health": { method: "GET" },
  "/v2": { method: "GET" },
  "/v3": { method: "GET" },
  "/v2/pipeline": { method: "POST", kind: "pipeline", version: 2 },
  "/v3/pipeline": { method: "POST", kind: "pipeline", version: 3 },
  "/v3/cursor": { method: "POST", kind: "cursor", version: 3 },
};

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Error("request body too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function drain(req: IncomingMessage): Promise<void> {
  for await (const _ of req as AsyncIterable<Buffer>) {
    // discard
  }
}

// ---------------------------------------------------------------------------------------
// Requests → statements

interface PreparedStmt {
  sql: string;
  args: Args;
  wantRows: boolean;
}

interface PreparedStep {
  stmt: PreparedStmt;
  condition: Cond | undefined;
}

function object(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ProtocolError(`Expected ${what} to be an object`);
  }
  return value as Record<string, unknown>;
}

function integer(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new ProtocolError(`Expected ${what} to be an integer`);
  }
  return value;
}

function sqlOf(req: Record<string, unknown>, sqls: Map<number, string>): string {
  const hasSql = req.sql !== undefined && req.sql !== null;
  const hasId = req.sql_id !== undefined && req.sql_id !== null;
  if (hasSql && hasId) throw new ProtocolError("Both `sql` and `sql_id` were given");
  if (hasSql) {
    if (typeof req.sql !== "string") throw new ProtocolError("`sql` must be a string");
    return req.sql;
  }
  if (!hasId) throw new ProtocolError("Neither `sql` nor `sql_id` was given");
  const sqlId = integer(req.sql_id, "sql_id");
  const sql = sqls.get(sqlId);
  if (sql === undefined) throw new ProtocolError(`SQL text ${sqlId} was not found`);
  return sql;
}

function singleStatement(sql: string): string {
  const statements = splitStatements(sql);
  if (statements.length === 0) throw new HranaError("SQL_NO_STATEMENT", "SQL string does not contain any statement");
  if (statements.length > 1) throw new HranaError("SQL_MANY_STATEMENTS", "SQL string contains more than one statement");
  return statements[0] as string;
}

function prepareStmt(stmt: Record<string, unknown>, sqls: Map<number, string>): PreparedStmt {
  const sql = sqlOf(stmt, sqls);
  const positional = stmt.args === undefined || stmt.args === null ? [] : stmt.args;
  const named = stmt.named_args === undefined || stmt.named_args === null ? [] : stmt.named_args;
  if (!Array.isArray(positional) || !Array.isArray(named)) {
    throw new ProtocolError("`args` and `named_args` must be arrays");
  }
  const positionalValues = positional.map(decodeValue);
  const namedValues = named.map((arg: unknown) => {
    const { name, value } = object(arg, "named argument");
    if (typeof name !== "string") throw new ProtocolError("A named argument needs a string `name`");
    return [name, decodeValue(value)] as const;
  });
  if (stmt.want_rows !== undefined && stmt.want_rows !== null && typeof stmt.want_rows !== "boolean") {
    throw new ProtocolError("`want_rows` must be a boolean");
  }
  const text = singleStatement(sql);
  if (positionalValues.length > 0 && namedValues.length > 0) {
    throw new HranaError(
      "ARGS_BOTH_POSITIONAL_AND_NAMED",
      "Specifying both positional and named arguments is not supported",
    );
  }
  let args: Args = positionalValues;
  if (namedValues.length > 0) {
    // libsql-js binds `:x`, `@x` and `$x` from the key `x`; the client may send either form.
    args = Object.fromEntries(namedValues.map(([name, value]) => [/^[:@$]/.test(name) ? name.slice(1) : name, value]));
  } else {
    const expected = statementInfo(text).paramCount;
    if (positionalValues.length > expected) {
      throw new HranaError(
        "ARGS_INVALID",
        `Arguments do not match SQL parameters: the statement has ${expected} parameters, ${positionalValues.length} arguments were given`,
      );
    }
  }
  return { sql: text, args, wantRows: stmt.want_rows !== false };
}

function prepareBatch(batch: Record<string, unknown>, sqls: Map<number, string>, version: Version): PreparedStep[] {
  if (!Array.isArray(batch.steps)) throw new ProtocolError("`steps` must be an array");
  return batch.steps.map((raw: unknown, i: number) => {
    const step = object(raw, "batch step");
    const condition = step.condition === undefined || step.condition === null
      ? undefined
      : parseCond(step.condition, i, version);
    return { stmt: prepareStmt(object(step.stmt, "stmt"), sqls), condition };
  });
}

function parseCond(raw: unknown, stepIndex: number, version: Version): Cond {
  const cond = object(raw, "batch condition");
  switch (cond.type) {
    case "ok":
    case "error": {
      const step = integer(cond.step, "condition step");
      if (step < 0 || step >= stepIndex) {
        throw new ProtocolError(`A condition of step ${stepIndex} refers to step ${step}, which does not precede it`);
      }
      return { type: cond.type, step };
    }
    case "not":
      return { type: "not", cond: parseCond(cond.cond, stepIndex, version) };
    case "and":
    case "or":
      if (!Array.isArray(cond.conds)) throw new ProtocolError("`conds` must be an array");
      return { type: cond.type, conds: cond.conds.map((c: unknown) => parseCond(c, stepIndex, version)) };
    case "is_autocommit":
      if (version < 3) {
        throw new ProtocolError("The `is_autocommit` condition is supported only on protocol version 3 and higher");
      }
      return { type: "is_autocommit" };
    default:
      throw new ProtocolError(`Unknown batch condition type ${JSON.stringify(cond.type)}`);
  }
}

type Outcome = "ok" | "error" | "skipped";

function evalCond(cond: Cond, outcomes: readonly Outcome[], conn: Conn): boolean {
  switch (cond.type) {
    case "ok":
      return outcomes[cond.step] === "ok";
    case "error":
      return outcomes[cond.step] === "error";
    case "not":
      return !evalCond(cond.cond, outcomes, conn);
    case "and":
      return cond.conds.every((c) => evalCond(c, outcomes, conn));
    case "or":
      return cond.conds.some((c) => evalCond(c, outcomes, conn));
    case "is_autocommit":
      return conn.isAutocommit();
  }
}

function runBatch(conn: Conn, steps: PreparedStep[]) {
  const outcomes: Outcome[] = [];
  const step_results: (StmtResult | null)[] = [];
  const step_errors: (HranaErrorBody | null)[] = [];
  for (const step of steps) {
    if (step.condition && !evalCond(step.condition, outcomes, conn)) {
      outcomes.push("skipped");
      step_results.push(null);
      step_errors.push(null);
      continue;
    }
    try {
      step_results.push(conn.run(step.stmt));
      step_errors.push(null);
      outcomes.push("ok");
    } catch (error) {
      if (!(error instanceof HranaError)) throw error;
      step_results.push(null);
      step_errors.push(error.toBody());
      outcomes.push("error");
    }
  }
  return { step_results, step_errors };
}

function decodeValue(raw: unknown): BindValue {
  const value = object(raw, "value");
  switch (value.type) {
    case "null":
      return null;
    case "integer": {
      if (typeof value.value !== "string" || !/^-?\d+$/.test(value.value)) {
        throw new ProtocolError("An integer value must be a decimal string");
      }
      const n = BigInt(value.value);
      if (n < -(2n ** 63n) || n >= 2n ** 63n) throw new ProtocolError("An integer value must fit in 64 bits");
      return n;
    }
    case "float":
      if (typeof value.value !== "number") throw new ProtocolError("A float value must be a number");
      return value.value;
    case "text":
      if (typeof value.value !== "string") throw new ProtocolError("A text value must be a string");
      return value.value;
    case "blob":
      if (typeof value.base64 !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(value.base64)) {
        throw new ProtocolError("A blob value needs `base64`");
      }
      return Buffer.from(value.base64, "base64");
    default:
      throw new ProtocolError(`Unknown value type ${JSON.stringify(value.type)}`);
  }
}

function encodeValue(value: unknown): HranaValue {
  if (value === null || value === undefined) return { type: "null" };
  // safeIntegers: INTEGER comes back as bigint, REAL as number.
  if (typeof value === "bigint") return { type: "integer", value: value.toString() };
  if (typeof value === "number") return { type: "float", value };
  if (typeof value === "string") return { type: "text", value };
  if (value instanceof Uint8Array) {
    return {
      type: "blob",
      base64: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64").replace(/=+$/, ""),
    };
  }
  throw new Error(`unexpected value from libSQL: ${typeof value}`);
}

// ---------------------------------------------------------------------------------------
// One libSQL connection

class Conn {
  readonly #db: Db;
  readonly #onClose: () => void;
  #changes: Stmt | undefined;

  constructor(path: string, busyTimeoutMs: number, onClose: () => void) {
    this.#db = new Database(path);
    this.#db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
    this.#onClose = onClose;
  }

  isAutocommit(): boolean {
    return !this.#db.inTransaction;
  }

  run(stmt: PreparedStmt): StmtResult {
    const started = performance.now();
    const info = statementInfo(stmt.sql);
    const prepared = this.#prepare(stmt.sql);
    let cols: StmtResult["cols"] = [];
    let rows: HranaValue[][] = [];
    try {
      prepared.safeIntegers(true);
      if (prepared.reader) {
        prepared.raw(true);
        cols = prepared.columns().map((c) => ({ name: c.name, decltype: c.type ?? null }));
        const all = prepared.all(stmt.args) as unknown[][];
        if (stmt.wantRows) rows = all.map((row) => row.map(encodeValue));
      } else {
        prepared.run(stmt.args);
      }
    } catch (error) {
      throw sqliteError(error, "SQLite error");
    }
    let affected = 0;
    let lastInsertRowid: string | null = null;
    if (info.iud) {
      this.#changes ??= this.#db.prepare("SELECT changes(), last_insert_rowid()").raw(true).safeIntegers(true);
      const [changes, rowid] = (this.#changes.all() as [bigint, bigint][])[0] ?? [0n, 0n];
      affected = Number(changes);
      if (info.insert) lastInsertRowid = String(rowid);
    }
    return {
      cols,
      rows,
      affected_row_count: affected,
      last_insert_rowid: lastInsertRowid,
      rows_read: rows.length,
      rows_written: affected,
      query_duration_ms: performance.now() - started,
    };
  }

  describe(sql: string) {
    const info = statementInfo(sql);
    const prepared = this.#prepare(sql);
    const cols = prepared.reader ? prepared.columns().map((c) => ({ name: c.name, decltype: c.type ?? null })) : [];
    let readonly = info.transactionControl || info.explain;
    if (!readonly) {
      // sqlite3_stmt_readonly is not exposed: a program that opens no write transaction is read-only.
      const program = this.#prepare(`EXPLAIN ${sql}`).raw(true).all() as unknown[][];
      readonly = !program.some((op) => (op[1] === "Transaction" && op[3] !== 0) || op[1] === "OpenWrite");
    }
    return { params: info.params.map((name) => ({ name })), cols, is_explain: info.explain, is_readonly: readonly };
  }

  close(): void {
    try {
      // Roll back first: closing with statements not yet garbage-collected leaves a
      // zombie connection that would keep holding the write lock.
      if (this.#db.inTransaction) this.#db.exec("ROLLBACK");
    } catch {
      // the connection goes away regardless
    }
    this.#db.close();
    this.#onClose();
  }

  #prepare(sql: string): Stmt {
    try {
      return this.#db.prepare(sql);
    } catch (error) {
      const message = (error as Error)?.message ?? String(error);
      if (/syntax error|incomplete input|unrecognized token/i.test(message)) {
        throw new HranaError("SQL_PARSE_ERROR", `SQL string could not be parsed: ${message}`);
      }
      if (primaryCode(error) === "SQLITE_ERROR") throw new HranaError("SQL_INPUT_ERROR", `SQL input error: ${message}`);
      throw sqliteError(error, "SQLite error");
    }
  }
}

const SQLITE_CODES = [
  "SQLITE_OK",
  "SQLITE_ERROR",
  "SQLITE_INTERNAL",
  "SQLITE_PERM",
  "SQLITE_ABORT",
  "SQLITE_BUSY",
  "SQLITE_LOCKED",
  "SQLITE_NOMEM",
  "SQLITE_READONLY",
  "SQLITE_INTERRUPT",
  "SQLITE_IOERR",
  "SQLITE_CORRUPT",
  "SQLITE_NOTFOUND",
  "SQLITE_FULL",
  "SQLITE_CANTOPEN",
  "SQLITE_PROTOCOL",
  "SQLITE_EMPTY",
  "SQLITE_SCHEMA",
  "SQLITE_TOOBIG",
  "SQLITE_CONSTRAINT",
  "SQLITE_MISMATCH",
  "SQLITE_MISUSE",
  "SQLITE_NOLFS",
  "SQLITE_AUTH",
  "SQLITE_FORMAT",
  "SQLITE_RANGE",
  "SQLITE_NOTADB",
];

/** sqld reports the primary result code (SQLITE_CONSTRAINT, not SQLITE_CONSTRAINT_PRIMARYKEY). */
function primaryCode(error: unknown): string {
  const raw = (error as { rawCode?: unknown } | null)?.rawCode;
  if (typeof raw === "number") return SQLITE_CODES[raw & 0xff] ?? "SQLITE_UNKNOWN";
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && code.startsWith("SQLITE_")) {
    return SQLITE_CODES.find((c) => code === c || code.startsWith(`${c}_`)) ?? "SQLITE_UNKNOWN";
  }
  return "SQLITE_UNKNOWN";
}

function sqliteError(error: unknown, prefix: string): HranaError {
  if (error instanceof HranaError) return error;
  return new HranaError(primaryCode(error), `${prefix}: ${(error as Error)?.message ?? String(error)}`);
}

// ---------------------------------------------------------------------------------------
// SQL text: tokens, statement boundaries (sqlite3_complete's state machine, which knows
// that the semicolons inside CREATE TRIGGER ... BEGIN ... END do not end the statement),
// parameters, and the statement kind.

interface Token {
  kind: "ws" | "semi" | "word" | "param" | "lparen" | "rparen" | "other";
  text: string;
  start: number;
  end: number;
}

function* tokenize(sql: string): Generator<Token> {
  let i = 0;
  const n = sql.length;
  const isIdStart = (c: string) => /[A-Za-z_\u0080-\uffff]/.test(c);
  const isId = (c: string) => /[A-Za-z0-9_$\u0080-\uffff]/.test(c);
  while (i < n) {
    const start = i;
    const c = sql[i] as string;
    let kind: Token["kind"] = "other";
    if (/\s/.test(c)) {
      while (i < n && /\s/.test(sql[i] as string)) i++;
      kind = "ws";
    } else if (c === "-" && sql[i + 1] === "-") {
      while (i < n && sql[i] !== "\n") i++;
      kind = "ws";
    } else if (c === "/" && sql[i + 1] === "*") {
      const close = sql.indexOf("*/", i + 2);
      i = close < 0 ? n : close + 2;
      kind = "ws";
    } else if (c === "'" || c === '"' || c === "`") {
      i++;
      while (i < n) {
        if (sql[i] === c) {
          if (sql[i + 1] === c) i += 2;
          else {
            i++;
            break;
          }
        } else i++;
      }
    } else if (c === "[") {
      const close = sql.indexOf("]", i + 1);
      i = close < 0 ? n : close + 1;
    } else if (c === ";") {
      i++;
      kind = "semi";
    } else if (c === "(") {
      i++;
      kind = "lparen";
    } else if (c === ")") {
      i++;
      kind = "rparen";
    } else if (c === "?") {
      i++;
      while (i < n && /[0-9]/.test(sql[i] as string)) i++;
      kind = "param";
    } else if ((c === ":" || c === "@" || c === "$") && i + 1 < n && isId(sql[i + 1] as string)) {
      i++;
      while (i < n && isId(sql[i] as string)) i++;
      kind = "param";
    } else if (/[0-9.]/.test(c)) {
      while (i < n && /[0-9A-Za-z_.]/.test(sql[i] as string)) i++;
    } else if (isIdStart(c)) {
      while (i < n && isId(sql[i] as string)) i++;
      kind = "word";
    } else {
      i++;
    }
    yield { kind, text: sql.slice(start, i), start, end: i };
  }
}

// Token classes and transitions of sqlite3_complete (complete.c).
const SEMI = 0, WS = 1, OTHER = 2, EXPLAIN = 3, CREATE = 4, TEMP = 5, TRIGGER = 6, END = 7;
const TRANSITIONS: readonly (readonly number[])[] = [
  /* 0 invalid */ [1, 0, 2, 3, 4, 2, 2, 2],
  /* 1 start   */ [1, 1, 2, 3, 4, 2, 2, 2],
  /* 2 normal  */ [1, 2, 2, 2, 2, 2, 2, 2],
  /* 3 explain */ [1, 3, 3, 2, 4, 2, 2, 2],
  /* 4 create  */ [1, 4, 2, 2, 2, 4, 5, 2],
  /* 5 trigger */ [6, 5, 5, 5, 5, 5, 5, 5],
  /* 6 semi    */ [6, 6, 5, 5, 5, 5, 5, 7],
  /* 7 end     */ [1, 7, 5, 5, 5, 5, 5, 5],
];

function tokenClass(token: Token): number {
  if (token.kind === "semi") return SEMI;
  if (token.kind === "ws") return WS;
  if (token.kind !== "word") return OTHER;
  switch (token.text.toUpperCase()) {
    case "EXPLAIN":
      return EXPLAIN;
    case "CREATE":
      return CREATE;
    case "TEMP":
    case "TEMPORARY":
      return TEMP;
    case "TRIGGER":
      return TRIGGER;
    case "END":
      return END;
    default:
      return OTHER;
  }
}

/** The statements of `sql`, without their terminating semicolons; empty statements are dropped. */
export function splitStatements(sql: string): string[] {
  const statements: string[] = [];
  let state = 0;
  let start = 0;
  let content = false;
  for (const token of tokenize(sql)) {
    state = TRANSITIONS[state]?.[tokenClass(token)] ?? 2;
    if (token.kind === "semi" && state === 1) {
      if (content) statements.push(sql.slice(start, token.start).trim());
      content = false;
    } else if (token.kind !== "ws" && token.kind !== "semi" && !content) {
      start = token.start;
      content = true;
    }
  }
  if (content) statements.push(sql.slice(start).trim());
  return statements;
}

interface StatementInfo {
  /** INSERT/UPDATE/DELETE/REPLACE: sqld reports changes() only for these. */
  iud: boolean;
  insert: boolean;
  explain: boolean;
  transactionControl: boolean;
  /** sqlite3_bind_parameter_count */
  paramCount: number;
  /** sqlite3_bind_parameter_name of 1..paramCount (null for `?`). */
  params: (string | null)[];
}

const infoCache = new Map<string, StatementInfo>();

function statementInfo(sql: string): StatementInfo {
  const cached = infoCache.get(sql);
  if (cached) return cached;
  const tokens = [...tokenize(sql)].filter((t) => t.kind !== "ws");
  const words = tokens.map((t) => (t.kind === "word" ? t.text.toUpperCase() : ""));
  let verb = words[0] ?? "";
  if (verb === "WITH") {
    // The statement's verb is the first of these outside the CTEs' parentheses.
    let depth = 0;
    verb = "";
    for (let i = 1; i < tokens.length && !verb; i++) {
      const t = tokens[i] as Token;
      if (t.kind === "lparen") depth++;
      else if (t.kind === "rparen") depth--;
      else if (
        depth === 0 && ["SELECT", "VALUES", "INSERT", "REPLACE", "UPDATE", "DELETE"].includes(words[i] as string)
      ) verb = words[i] as string;
    }
  }
  const params: (string | null)[] = [];
  const byName = new Map<string, number>();
  for (const t of tokens) {
    if (t.kind !== "param") continue;
    if (t.text === "?") {
      params.push(null);
    } else if (t.text.startsWith("?")) {
      const index = Number(t.text.slice(1));
      while (params.length < index) params.push(null);
      params[index - 1] = t.text;
    } else if (!byName.has(t.text)) {
      params.push(t.text);
      byName.set(t.text, params.length);
    }
  }
  const info: StatementInfo = {
    iud: ["INSERT", "REPLACE", "UPDATE", "DELETE"].includes(verb),
    insert: verb === "INSERT" || verb === "REPLACE",
    explain: verb === "EXPLAIN",
    transactionControl: ["BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"].includes(verb),
    paramCount: params.length,
    params,
  };
  if (infoCache.size > 1000) infoCache.clear();
  infoCache.set(sql, info);
  return info;
}
