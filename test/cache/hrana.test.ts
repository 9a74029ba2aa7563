import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient as createFileClient } from "@libsql/client";
import { createClient, LibsqlBatchError, LibsqlError } from "@libsql/client/web";
import Database from "libsql";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { type HranaServer, splitStatements, startHranaServer } from "../support/hrana-server.ts";
import { waitFor } from "../support/wait.ts";

const root = mkdtempSync(join(tmpdir(), "hrana-test-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
let path: string;
let server: HranaServer;
const clients: Client[] = [];

function client(options: { authToken?: string; intMode?: "number" | "bigint" } = {}): Client {
  const c = createClient({ url: server.url, ...options });
  clients.push(c);
  return c;
}

/** Reads the file directly with libsql, bypassing the server. */
function readFile<T = unknown[]>(sql: string, ...args: unknown[]): T[] {
  const db = new Database(path);
  try {
    return db.prepare(sql).raw(true).all(...args) as T[];
  } finally {
    db.close();
  }
}

async function post(route: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}${route}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  const json = res.headers.get("content-type") === "application/json" ? JSON.parse(text) : undefined;
  return { status: res.status, text, json };
}

const text = (value: string) => ({ type: "text", value });
const int = (value: number | bigint) => ({ type: "integer", value: String(value) });
const stmt = (sql: string, extra: Record<string, unknown> = {}) => ({ sql, ...extra });

beforeEach(async () => {
  path = join(root, `db-${++counter}.db`);
  server = await startHranaServer({ path });
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server.close();
});

describe("Hrana server with @libsql/client/web", () => {
  it("executes with positional and named arguments", async () => {
    const db = client();
    await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b INTEGER)");
    const inserted = await db.execute({ sql: "INSERT INTO t (a, b) VALUES (?, ?)", args: ["one", 1] });
    expect(inserted.rowsAffected).toBe(1);
    expect(inserted.lastInsertRowid).toBe(1n);
    await db.execute({ sql: "INSERT INTO t (a, b) VALUES (:a, $b)", args: { a: "two", b: 2 } });
    await db.execute({ sql: "INSERT INTO t (a, b) VALUES (@a, ?2)", args: { "@a": "three", 2: 3 } });
    await db.execute({ sql: "INSERT INTO t (a, b) VALUES (?2, ?1)", args: [4, "four"] });

    const all = await db.execute("SELECT id, a, b FROM t ORDER BY id");
    expect(all.columns).toEqual(["id", "a", "b"]);
    expect(all.columnTypes).toEqual(["INTEGER", "TEXT", "INTEGER"]);
    expect(all.rowsAffected).toBe(0);
    expect(all.rows.map((r) => [r.id, r.a, r.b])).toEqual([
      [1, "one", 1],
      [2, "two", 2],
      [3, "three", 3],
      [4, "four", 4],
    ]);
    const named = await db.execute({ sql: "SELECT a FROM t WHERE b = :b AND a = :a", args: { a: "two", b: 2 } });
    expect(named.rows.map((r) => r.a)).toEqual(["two"]);
    // Every call is one stream, closed in the same HTTP request.
    expect(server.openStreams).toBe(0);
    expect(server.openConnections).toBe(0);
  });

  it("runs a write batch as one transaction and a read batch over the same data", async () => {
    const db = client();
    const before = server.requests;
    const results = await db.batch(
      [
        "CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)",
        { sql: "INSERT INTO t VALUES (?, ?)", args: ["a", 1] },
        { sql: "INSERT INTO t VALUES (?, ?)", args: ["b", 2] },
        "UPDATE t SET v = v * 10",
        "SELECT k, v FROM t ORDER BY k",
      ],
      "write",
    );
    expect(server.requests - before).toBe(1);
    expect(results.map((r) => r.rowsAffected)).toEqual([0, 1, 1, 2, 0]);
    expect(results[4]?.rows.map((r) => [r.k, r.v])).toEqual([
      ["a", 10],
      ["b", 20],
    ]);

    // "read" begins with libSQL's BEGIN TRANSACTION READONLY: a plain SQLite server would refuse it.
    const [count, sum] = await db.batch(["SELECT count(*) AS n FROM t", "SELECT sum(v) AS s FROM t"], "read");
    expect(count?.rows[0]?.n).toBe(2);
    expect(sum?.rows[0]?.s).toBe(30);
    const [deferred] = await db.batch(["SELECT k FROM t WHERE v = 20"], "deferred");
    expect(deferred?.rows.map((r) => r.k)).toEqual(["b"]);
    expect(server.openStreams).toBe(0);
  });

  it("rolls back the whole batch when one statement fails", async () => {
    const db = client();
    await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
    await db.execute("INSERT INTO t VALUES (1, 'kept')");

    const constraint = await db
      .batch([
        "INSERT INTO t VALUES (2, 'two')",
        "UPDATE t SET v = 'changed' WHERE id = 1",
        "INSERT INTO t VALUES (1, 'dup')",
        "INSERT INTO t VALUES (3, 'three')",
      ], "write")
      .catch((e: unknown) => e);
    expect(constraint).toBeInstanceOf(LibsqlBatchError);
    expect((constraint as LibsqlBatchError).code).toBe("SQLITE_CONSTRAINT");
    expect((constraint as LibsqlBatchError).statementIndex).toBe(2);

    const syntax = await db.batch(["INSERT INTO t VALUES (4, 'four')", "INSRT INTO t VALUES (5, 'five')"], "write")
      .catch((e: unknown) => e);
    expect(syntax).toBeInstanceOf(LibsqlBatchError);
    expect((syntax as LibsqlBatchError).code).toBe("SQL_PARSE_ERROR");
    expect((syntax as LibsqlBatchError).statementIndex).toBe(1);

    const missing = await db.batch(["INSERT INTO t VALUES (6, 'six')", "SELECT * FROM nowhere"], "write").catch((
      e: unknown,
    ) => e);
    expect((missing as LibsqlBatchError).code).toBe("SQL_INPUT_ERROR");
    expect((missing as Error).message).toContain("no such table: nowhere");

    const rows = await db.execute("SELECT id, v FROM t ORDER BY id");
    expect(rows.rows.map((r) => [r.id, r.v])).toEqual([[1, "kept"]]);
    expect(readFile("SELECT id, v FROM t ORDER BY id")).toEqual([[1, "kept"]]);
    // The rollback ended the transaction: the file is writable by anyone right away.
    expect(server.openConnections).toBe(0);
  });

  it("round-trips integers, floats, unicode text, null and blobs", async () => {
    const db = client();
    await db.execute("CREATE TABLE v (i INTEGER, f REAL, t TEXT, n, b BLOB)");
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const cases = [
      [0, 0.5, "", null, new Uint8Array(0)],
      [-1, -0.25, "héllo ✓ 𝄞 日本語", null, bytes],
      [Number.MAX_SAFE_INTEGER, 1e300, 'line\nbreak "quoted" \\ tab\t', null, Uint8Array.of(0, 255)],
      [-(2 ** 31), Math.PI, "🙂", null, Uint8Array.of(61)],
    ] as const;
    for (const row of cases) await db.execute({ sql: "INSERT INTO v VALUES (?, ?, ?, ?, ?)", args: [...row] });

    const read = await db.execute(
      "SELECT i, f, t, n, b, typeof(i) AS ti, typeof(f) AS tf, typeof(b) AS tb FROM v ORDER BY rowid",
    );
    expect(read.rows).toHaveLength(cases.length);
    read.rows.forEach((row, index) => {
      const [i, f, t, , b] = cases[index] as (typeof cases)[number];
      expect(row.i).toBe(i);
      expect(row.f).toBe(f);
      expect(row.t).toBe(t);
      expect(row.n).toBeNull();
      expect(new Uint8Array(row.b as ArrayBuffer)).toEqual(b);
      expect([row.ti, row.tf, row.tb]).toEqual(["integer", "real", "blob"]);
    });

    // A JS number travels as a Hrana float, a bigint as an integer: the storage class shows it.
    const types = await db.execute({
      sql: "SELECT typeof(?) AS a, typeof(?) AS b, typeof(?) AS c, typeof(?) AS d",
      args: [5, 5n, "5", null],
    });
    expect(types.rows[0]).toMatchObject({ a: "real", b: "integer", c: "text", d: "null" });

    // Integers beyond 2^53 are exact on the wire; intMode decides what the client makes of them.
    const big = 2n ** 63n - 1n;
    await db.execute({ sql: "INSERT INTO v (i) VALUES (?)", args: [big] });
    await db.execute({ sql: "INSERT INTO v (i) VALUES (?)", args: [-(2n ** 63n)] });
    const exact = await client({ intMode: "bigint" }).execute(
      "SELECT i FROM v WHERE i > 9007199254740991 OR i < -9007199254740991 ORDER BY i",
    );
    expect(exact.rows.map((r) => r.i)).toEqual([-(2n ** 63n), big]);
    await expect(db.execute("SELECT i FROM v WHERE i = 9223372036854775807")).rejects.toThrow(RangeError);
    expect(readFile("SELECT count(*) FROM v WHERE i = 9223372036854775807")).toEqual([[1]]);
  });

  it("writes into the file itself, and sees what others write there", async () => {
    const db = client();
    await db.batch(["CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, data BLOB)", {
      sql: "INSERT INTO notes (body, data) VALUES (?, ?)",
      args: ["über", Uint8Array.of(1, 2, 3)],
    }], "write");

    const direct = readFile<[number, string, Buffer]>("SELECT id, body, data FROM notes");
    expect(direct).toHaveLength(1);
    expect(direct[0]?.[1]).toBe("über");
    expect([...(direct[0]?.[2] ?? [])]).toEqual([1, 2, 3]);

    const file = createFileClient({ url: `file:${path}` });
    try {
      await file.execute({ sql: "INSERT INTO notes (body) VALUES (?)", args: ["from the file client"] });
      expect((await file.execute("SELECT count(*) AS n FROM notes")).rows[0]?.n).toBe(2);
    } finally {
      file.close();
    }
    const seen = await db.execute("SELECT body FROM notes ORDER BY id");
    expect(seen.rows.map((r) => r.body)).toEqual(["über", "from the file client"]);
    expect(readFile("PRAGMA journal_mode")).toEqual([["wal"]]);
  });

  it("keeps an interactive transaction on one stream across requests", async () => {
    const db = client();
    await db.execute("CREATE TABLE t (v TEXT)");
    const tx = await db.transaction("write");
    await tx.execute({ sql: "INSERT INTO t VALUES (?)", args: ["inside"] });
    await tx.execute({ sql: "INSERT INTO t VALUES (?)", args: ["also inside"] });
    expect(server.openStreams).toBe(1);
    // Uncommitted: invisible to other connections.
    expect(readFile("SELECT count(*) FROM t")).toEqual([[0]]);
    expect((await tx.execute("SELECT count(*) AS n FROM t")).rows[0]?.n).toBe(2);
    await tx.commit();
    expect(server.openStreams).toBe(0);
    expect(readFile("SELECT v FROM t ORDER BY rowid")).toEqual([["inside"], ["also inside"]]);

    const undone = await db.transaction("write");
    await undone.execute("DELETE FROM t");
    await undone.rollback();
    expect(server.openStreams).toBe(0);
    expect(readFile("SELECT count(*) FROM t")).toEqual([[2]]);
  });

  it("runs executeMultiple as a sequence that stops at the first error", async () => {
    const db = client();
    await db.executeMultiple(`
      CREATE TABLE a (x); -- a comment; with a semicolon
      CREATE TRIGGER a_log AFTER INSERT ON a BEGIN INSERT INTO b VALUES (new.x * 2); END;
      CREATE TABLE b (y);
      INSERT INTO a VALUES (1); INSERT INTO a VALUES ('it''s; fine');
    `);
    expect(readFile("SELECT x FROM a ORDER BY rowid")).toEqual([[1], ["it's; fine"]]);
    expect(readFile("SELECT y FROM b ORDER BY rowid")).toEqual([[2], [0]]);

    const failed = await db.executeMultiple(
      "INSERT INTO a VALUES (2); INSERT INTO nowhere VALUES (3); INSERT INTO a VALUES (4);",
    ).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(LibsqlError);
    expect((failed as LibsqlError).code).toBe("SQL_INPUT_ERROR");
    expect(readFile("SELECT x FROM a ORDER BY rowid")).toEqual([[1], ["it's; fine"], [2]]);
  });

  it("requires the bearer token when one is configured", async () => {
    await server.close();
    server = await startHranaServer({ path, authToken: "s3cret" });
    const denied = await client().execute("SELECT 1").catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(LibsqlError);
    expect((denied as LibsqlError).code).toBe("SERVER_ERROR");
    expect((denied as Error).message).toContain("401");
    const wrong = await client({ authToken: "guess" }).execute("SELECT 1").catch((e: unknown) => e);
    expect((wrong as Error).message).toContain("401");
    expect((await post("/v2/pipeline", { requests: [{ type: "close" }] })).status).toBe(401);

    const allowed = await client({ authToken: "s3cret" }).execute("SELECT 42 AS answer");
    expect(allowed.rows[0]?.answer).toBe(42);
    expect(server.openConnections).toBe(0);
  });

  it("closes every connection on close(): open transactions roll back and release the file", async () => {
    const db = client();
    await db.execute("CREATE TABLE t (v)");
    const tx = await db.transaction("write");
    await tx.execute("INSERT INTO t VALUES ('never committed')");
    expect(server.openConnections).toBe(1);
    await server.close();
    expect(server.openConnections).toBe(0);
    expect(server.openStreams).toBe(0);

    // The write lock is free: a writer that does not wait at all gets it.
    const other = new Database(path);
    try {
      other.exec("PRAGMA busy_timeout = 0");
      other.exec("BEGIN IMMEDIATE");
      expect(other.prepare("SELECT count(*) FROM t").raw(true).all()).toEqual([[0]]);
      other.exec("ROLLBACK");
    } finally {
      other.close();
    }
    await expect(tx.commit()).rejects.toThrow();
    await expect(db.execute("SELECT 1")).rejects.toThrow();
  });
});

describe("Hrana over HTTP at the protocol level", () => {
  it("answers the version probes the way clients expect", async () => {
    for (const route of ["/v2", "/v3", "/"]) expect((await fetch(`${server.url}${route}`)).status).toBe(200);
    // JSON only: a v3 client probing protobuf falls back to v2.
    expect((await fetch(`${server.url}/v3-protobuf`)).status).toBe(404);
    expect((await fetch(`${server.url}/v2/pipeline`)).status).toBe(405);
  });

  it("encodes results like sqld: integers as strings, floats, text, blobs, nulls, counts", async () => {
    const { status, json } = await post("/v2/pipeline", {
      requests: [
        {
          type: "execute",
          stmt: stmt("CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, f REAL, s TEXT, b BLOB, n)"),
        },
        {
          type: "execute",
          stmt: stmt("INSERT INTO t (i, f, s, b, n) VALUES (?, ?, ?, ?, ?)", {
            args: [int(9007199254740993n), { type: "float", value: 2.5 }, text("ü"), {
              type: "blob",
              base64: "AAEC/w==",
            }, { type: "null" }],
          }),
        },
        { type: "execute", stmt: stmt("SELECT i, f, s, b, n FROM t") },
        { type: "execute", stmt: stmt("UPDATE t SET s = 'x' WHERE id > 0") },
        { type: "execute", stmt: stmt("SELECT 1 WHERE 0", { want_rows: false }) },
        { type: "close" },
      ],
    });
    expect(status).toBe(200);
    expect(json.baton).toBeNull();
    expect(json.base_url).toBeNull();
    const [create, insert, select, update, empty, close] = json.results;
    expect(create).toMatchObject({
      type: "ok",
      response: { type: "execute", result: { cols: [], rows: [], affected_row_count: 0, last_insert_rowid: null } },
    });
    expect(insert.response.result).toMatchObject({ affected_row_count: 1, last_insert_rowid: "1", rows_written: 1 });
    expect(select.response.result.cols).toEqual([
      { name: "i", decltype: "INTEGER" },
      { name: "f", decltype: "REAL" },
      { name: "s", decltype: "TEXT" },
      { name: "b", decltype: "BLOB" },
      { name: "n", decltype: null },
    ]);
    expect(select.response.result.rows).toEqual([
      [{ type: "integer", value: "9007199254740993" }, { type: "float", value: 2.5 }, { type: "text", value: "ü" }, {
        type: "blob",
        base64: "AAEC/w",
      }, { type: "null" }],
    ]);
    expect(select.response.result).toMatchObject({ affected_row_count: 0, last_insert_rowid: null, rows_read: 1 });
    // changes() is not reset by a SELECT; sqld reports it only for INSERT/UPDATE/DELETE.
    expect(update.response.result).toMatchObject({ affected_row_count: 1, last_insert_rowid: null });
    expect(empty.response.result).toMatchObject({ cols: [{ name: "1", decltype: null }], rows: [] });
    expect(close).toEqual({ type: "ok", response: { type: "close" } });
  });

  it("hands out a fresh baton per request, refuses a used one, and ends the stream on close", async () => {
    const first = await post("/v3/pipeline", {
      requests: [
        { type: "execute", stmt: stmt("CREATE TABLE t (v)") },
        { type: "execute", stmt: stmt("BEGIN") },
        { type: "execute", stmt: stmt("INSERT INTO t VALUES (1)") },
        { type: "get_autocommit" },
      ],
    });
    expect(first.json.results[3]).toEqual({ type: "ok", response: { type: "get_autocommit", is_autocommit: false } });
    const baton = first.json.baton as string;
    expect(typeof baton).toBe("string");
    expect(server.openStreams).toBe(1);

    const second = await post("/v3/pipeline", {
      baton,
      requests: [{ type: "execute", stmt: stmt("COMMIT") }, { type: "get_autocommit" }],
    });
    expect(second.status).toBe(200);
    expect(second.json.results[1].response.is_autocommit).toBe(true);
    expect(second.json.baton).not.toBe(baton);

    const reused = await post("/v3/pipeline", { baton, requests: [{ type: "get_autocommit" }] });
    expect(reused.status).toBe(400);
    // As in sqld, a refused baton leaves the stream alone: the current one still works.
    expect(server.openStreams).toBe(1);
    const done = await post("/v3/pipeline", { baton: second.json.baton, requests: [{ type: "close" }] });
    expect(done.json.baton).toBeNull();
    expect(server.openStreams).toBe(0);
    expect((await post("/v3/pipeline", { baton: second.json.baton, requests: [] })).status).toBe(400);
    expect(readFile("SELECT v FROM t")).toEqual([[1]]);

    const closed = await post("/v2/pipeline", {
      requests: [{ type: "close" }, { type: "execute", stmt: stmt("SELECT 1") }],
    });
    expect(closed.status).toBe(400);
    expect((await post("/v2/pipeline", { requests: [{ type: "get_autocommit" }] })).status).toBe(400);
    expect((await post("/v2/pipeline", "{not json")).status).toBe(400);
    expect((await post("/v2/pipeline", { requests: [{ type: "teleport" }] })).status).toBe(400);
    expect((await post("/v2/pipeline", { baton: "nonsense", requests: [] })).status).toBe(400);
    expect(server.openStreams).toBe(0);
  });

  it("evaluates batch conditions: ok, error, not, and, or, is_autocommit", async () => {
    const { json } = await post("/v3/pipeline", {
      requests: [
        {
          type: "batch",
          batch: {
            steps: [
              { stmt: stmt("SELECT 'step0'") },
              { stmt: stmt("SELECT * FROM missing") },
              { condition: { type: "ok", step: 1 }, stmt: stmt("SELECT 'skipped: step 1 failed'") },
              { condition: { type: "error", step: 1 }, stmt: stmt("SELECT 'runs: step 1 failed'") },
              { condition: { type: "not", cond: { type: "ok", step: 0 } }, stmt: stmt("SELECT 'skipped'") },
              {
                condition: { type: "and", conds: [{ type: "ok", step: 0 }, { type: "error", step: 1 }] },
                stmt: stmt("SELECT 'runs: and'"),
              },
              {
                condition: { type: "or", conds: [{ type: "ok", step: 1 }, { type: "ok", step: 2 }] },
                stmt: stmt("SELECT 'skipped: or'"),
              },
              { condition: { type: "error", step: 2 }, stmt: stmt("SELECT 'skipped: a skipped step is not an error'") },
              { condition: { type: "is_autocommit" }, stmt: stmt("BEGIN") },
              { condition: { type: "is_autocommit" }, stmt: stmt("SELECT 'skipped: in a transaction now'") },
              { condition: { type: "not", cond: { type: "is_autocommit" } }, stmt: stmt("ROLLBACK") },
            ],
          },
        },
        { type: "close" },
      ],
    });
    const { step_results: results, step_errors: errors } = json.results[0].response.result;
    const ran = results.map((r: unknown, i: number) => (r !== null ? "ok" : errors[i] !== null ? "error" : "skipped"));
    expect(ran).toEqual(["ok", "error", "skipped", "ok", "skipped", "ok", "skipped", "skipped", "ok", "skipped", "ok"]);
    expect(errors[1]).toMatchObject({ code: "SQL_INPUT_ERROR" });
    expect(errors[1].message).toContain("no such table: missing");
    expect(results[3].rows).toEqual([[text("runs: step 1 failed")]]);

    // A condition may only look back, and is_autocommit is v3 only.
    const forward = await post("/v3/pipeline", {
      requests: [{ type: "batch", batch: { steps: [{ condition: { type: "ok", step: 0 }, stmt: stmt("SELECT 1") }] } }],
    });
    expect(forward.status).toBe(400);
    const v2 = await post("/v2/pipeline", {
      requests: [{
        type: "batch",
        batch: {
          steps: [{ stmt: stmt("SELECT 1") }, { condition: { type: "is_autocommit" }, stmt: stmt("SELECT 2") }],
        },
      }],
    });
    expect(v2.status).toBe(400);
  });

  it("stores and closes SQL texts, describes statements, and reports SQL errors without ending the stream", async () => {
    const { status, json } = await post("/v3/pipeline", {
      requests: [
        { type: "store_sql", sql_id: 1, sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)" },
        { type: "execute", stmt: { sql_id: 1 } },
        { type: "store_sql", sql_id: 2, sql: "INSERT INTO t (name) VALUES (:name) RETURNING id" },
        { type: "execute", stmt: { sql_id: 2, named_args: [{ name: "name", value: text("a") }] } },
        {
          type: "batch",
          batch: { steps: [{ stmt: { sql_id: 2, named_args: [{ name: ":name", value: text("b") }] } }] },
        },
        { type: "close_sql", sql_id: 2 },
        { type: "describe", sql: "SELECT id, name FROM t WHERE id = ?1 OR name = :n OR name = @n OR id = ?" },
        { type: "describe", sql: "DELETE FROM t" },
        { type: "describe", sql: "EXPLAIN SELECT 1" },
        { type: "execute", stmt: stmt("SELECT 1; SELECT 2") },
        { type: "execute", stmt: stmt("  -- nothing\n") },
        { type: "execute", stmt: stmt("SELEKT 1") },
        { type: "execute", stmt: stmt("INSERT INTO t (id) VALUES (1)") },
        { type: "execute", stmt: stmt("SELECT ?", { args: [int(1), int(2)] }) },
        { type: "execute", stmt: stmt("SELECT :a", { args: [int(1)], named_args: [{ name: "a", value: int(1) }] }) },
        { type: "sequence", sql: "INSERT INTO t (name) VALUES ('c'); INSERT INTO t (name) VALUES ('d')" },
        { type: "execute", stmt: stmt("SELECT name FROM t ORDER BY id") },
      ],
    });
    expect(status).toBe(200);
    const r = json.results;
    expect(r.map((x: { type: string }) => x.type)).toEqual([
      "ok",
      "ok",
      "ok",
      "ok",
      "ok",
      "ok",
      "ok",
      "ok",
      "ok",
      "error",
      "error",
      "error",
      "error",
      "error",
      "error",
      "ok",
      "ok",
    ]);
    expect(r[3].response.result).toMatchObject({
      cols: [{ name: "id" }],
      rows: [[int(1)]],
      affected_row_count: 1,
      last_insert_rowid: "1",
    });
    expect(r[4].response.result.step_results[0].rows).toEqual([[int(2)]]);
    expect(r[6].response.result).toEqual({
      params: [{ name: "?1" }, { name: ":n" }, { name: "@n" }, { name: null }],
      cols: [
        { name: "id", decltype: "INTEGER" },
        { name: "name", decltype: "TEXT" },
      ],
      is_explain: false,
      is_readonly: true,
    });
    expect(r[7].response.result).toMatchObject({ params: [], cols: [], is_explain: false, is_readonly: false });
    expect(r[8].response.result).toMatchObject({ is_explain: true, is_readonly: true });
    expect(r.slice(9, 15).map((x: { error: { code: string } }) => x.error.code)).toEqual([
      "SQL_MANY_STATEMENTS",
      "SQL_NO_STATEMENT",
      "SQL_PARSE_ERROR",
      "SQLITE_CONSTRAINT",
      "ARGS_INVALID",
      "ARGS_BOTH_POSITIONAL_AND_NAMED",
    ]);
    expect(r[12].error.message).toContain("UNIQUE constraint failed: t.id");
    expect(r[16].response.result.rows).toEqual([[text("a")], [text("b")], [text("c")], [text("d")]]);
    const baton = json.baton as string;

    // A closed SQL id is gone: using it is a protocol error.
    expect((await post("/v3/pipeline", { baton, requests: [{ type: "execute", stmt: { sql_id: 2 } }] })).status).toBe(
      400,
    );
    // Storing one id twice is too.
    const twice = await post("/v3/pipeline", {
      requests: [{ type: "store_sql", sql_id: 7, sql: "SELECT 1" }, { type: "store_sql", sql_id: 7, sql: "SELECT 2" }],
    });
    expect(twice.status).toBe(400);
    expect(server.openStreams).toBe(0);
  });

  it("streams a batch from /v3/cursor as newline-delimited JSON", async () => {
    const res = await fetch(`${server.url}/v3/cursor`, {
      method: "POST",
      body: JSON.stringify({
        batch: {
          steps: [
            { stmt: stmt("SELECT 1 AS a UNION ALL SELECT 2") },
            { stmt: stmt("SELECT * FROM missing") },
            { condition: { type: "ok", step: 1 }, stmt: stmt("SELECT 3") },
          ],
        },
      }),
    });
    expect(res.status).toBe(200);
    const lines = (await res.text()).trimEnd().split("\n").map((line) => JSON.parse(line));
    expect(typeof lines[0].baton).toBe("string");
    expect(lines.slice(1).map((e: { type: string }) => e.type)).toEqual([
      "step_begin",
      "row",
      "row",
      "step_end",
      "step_error",
    ]);
    expect(lines[1]).toEqual({ type: "step_begin", step: 0, cols: [{ name: "a", decltype: null }] });
    expect(lines[3]).toEqual({ type: "row", row: [int(2)] });
    expect(lines[5]).toMatchObject({ type: "step_error", step: 1, error: { code: "SQL_INPUT_ERROR" } });
    const closed = await post("/v3/pipeline", { baton: lines[0].baton, requests: [{ type: "close" }] });
    expect(closed.json).toEqual({
      baton: null,
      base_url: null,
      results: [{ type: "ok", response: { type: "close" } }],
    });
  });

  it("expires idle streams: the transaction rolls back, the baton answers STREAM_EXPIRED", async () => {
    const open = await post("/v2/pipeline", {
      requests: [
        { type: "execute", stmt: stmt("CREATE TABLE t (v)") },
        { type: "execute", stmt: stmt("BEGIN IMMEDIATE") },
        { type: "execute", stmt: stmt("INSERT INTO t VALUES ('uncommitted')") },
      ],
    });
    expect(server.openConnections).toBe(1);
    server.expireIdleStreams();
    expect(server.openConnections).toBe(0);
    const late = await post("/v2/pipeline", {
      baton: open.json.baton,
      requests: [{ type: "execute", stmt: stmt("COMMIT") }],
    });
    expect(late.status).toBe(500);
    expect(late.json).toEqual({ message: "The stream has expired due to inactivity", code: "STREAM_EXPIRED" });
    expect(readFile("SELECT count(*) FROM t")).toEqual([[0]]);

    // The client maps it to a LibsqlError with that code.
    const db = client();
    const tx = await db.transaction("write");
    await tx.execute("INSERT INTO t VALUES ('also uncommitted')");
    server.expireIdleStreams();
    const error = await tx.commit().catch((e: unknown) => e);
    expect((error as LibsqlError).code).toBe("STREAM_EXPIRED");
    expect(readFile("SELECT count(*) FROM t")).toEqual([[0]]);
  });

  it("expires a stream on its own after streamExpiryMs", async () => {
    await server.close();
    server = await startHranaServer({ path, streamExpiryMs: 25 });
    const open = await post("/v2/pipeline", { requests: [{ type: "execute", stmt: stmt("BEGIN IMMEDIATE") }] });
    expect(open.json.baton).toEqual(expect.any(String));
    await waitFor("the expired stream's connection to close", () => {
      expect(server.openConnections).toBe(0);
      return true;
    }, { timeoutMs: 10_000, intervalMs: 10 });
    expect((await post("/v2/pipeline", { baton: open.json.baton, requests: [] })).json.code).toBe("STREAM_EXPIRED");
  });

  it("sets busy_timeout on its connections", async () => {
    await server.close();
    server = await startHranaServer({ path, busyTimeoutMs: 1234 });
    const result = await client().execute("PRAGMA busy_timeout");
    expect(Object.values(result.rows[0] ?? {})).toEqual([1234]);
  });
});

describe("splitStatements", () => {
  it("splits on semicolons outside strings, comments and trigger bodies", () => {
    expect(splitStatements("SELECT 1; SELECT ';' AS x;;  -- c;\n SELECT \"a;b\" /* ; */")).toEqual([
      "SELECT 1",
      "SELECT ';' AS x",
      'SELECT "a;b" /* ; */',
    ]);
    expect(splitStatements("CREATE TEMP TRIGGER tr AFTER INSERT ON a BEGIN SELECT 1; SELECT 2; END; SELECT 3")).toEqual(
      [
        "CREATE TEMP TRIGGER tr AFTER INSERT ON a BEGIN SELECT 1; SELECT 2; END",
        "SELECT 3",
      ],
    );
    expect(splitStatements(" ; -- only a comment")).toEqual([]);
    expect(splitStatements("SELECT [x;y] FROM `t;u`")).toEqual(["SELECT [x;y] FROM `t;u`"]);
  });
});
