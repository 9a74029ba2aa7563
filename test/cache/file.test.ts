import { execFile } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { promisify } from "node:util";
import Database from "libsql";
import { describe, expect, it } from "vitest";
import { LibsqlCache } from "../../src/cache/libsql.ts";
import { LibsqlFileClient } from "../../src/runtime/libsql-file.ts";
import type { CheckpointPass } from "../../src/runtime/wal-checkpointer.ts";
import { asCommits, describeCacheContract, History } from "./cache-contract.ts";

/**
 * `nodeWired`: applies batched per turn, writes on a worker thread's connection and the
 * WAL checkpointed from another (often, to race every call), as the Node server runs it.
 */
const fileCache = (nodeWired: boolean) => async ({ retryAfterMs }: { retryAfterMs: number }) => {
  const dir = mkdtempSync(join(tmpdir(), "cache-file-"));
  const path = join(dir, "cache.db");
  // While "down", connect() points into a folder that does not exist: SQLITE_CANTOPEN.
  const unreachable = join(dir, "missing", "cache.db");
  let down = false;
  let connects = 0;
  const clients: LibsqlFileClient[] = [];
  const cache = new LibsqlCache({
    local: true,
    retryAfterMs,
    ...(nodeWired ? { batchApplies: (flush: () => void) => setImmediate(flush) } : {}),
    connect: () => {
      connects++;
      const client = new LibsqlFileClient(down ? unreachable : path, {
        busyTimeoutMs: 5000,
        ...(nodeWired && !down ? { checkpointEveryMs: 5, writesOnWorker: true } : {}),
      });
      clients.push(client);
      return client;
    },
  });
  return {
    cache,
    get connects() {
      return connects;
    },
    async outage() {
      down = true;
      // The open client goes away under the cache, as a vanished volume would take it.
      for (const client of clients) client.close();
    },
    async restore() {
      down = false;
    },
    exec(sql: string) {
      const db = new Database(path);
      try {
        db.exec(sql);
      } finally {
        db.close();
      }
    },
    async dispose() {
      cache.close();
      for (const client of clients) client.close();
      await Promise.all(clients.map((client) => client.closed));
      rmSync(dir, { recursive: true, force: true });
    },
  };
};

describeCacheContract("file: URL, the prepared-statement file client of Node and Deno", fileCache(false));
describeCacheContract(
  "file: URL, applies batched per turn, writes and WAL checkpoints on worker threads, as the Node server wires it",
  fileCache(true),
);

describe("the WAL checkpointed from a worker thread", () => {
  it("passes run on their own, every few ms", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cache-checkpoint-"));
    let first!: (pass: CheckpointPass) => void;
    const passed = new Promise<CheckpointPass>((resolve) => (first = resolve));
    const client = new LibsqlFileClient(join(dir, "cache.db"), {
      busyTimeoutMs: 5000,
      checkpointEveryMs: 1,
      onCheckpoint: (pass) => first(pass),
    });
    try {
      await client.execute("PRAGMA journal_mode = WAL");
      expect(await passed).toMatchObject({ ok: true });
    } finally {
      client.close();
      await client.closed;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("copies what the connection wrote into the database file, beside it; closing ends the worker", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cache-checkpoint-"));
    const path = join(dir, "cache.db");
    // Seldom on their own here: the passes this test looks at are the ones it asks for.
    const client = new LibsqlFileClient(path, { busyTimeoutMs: 5000, checkpointEveryMs: 60_000 });
    try {
      await client.execute("PRAGMA journal_mode = WAL");
      // Far above what is written: the connection itself never checkpoints here.
      await client.execute("PRAGMA wal_autocheckpoint = 100000");
      await client.execute("CREATE TABLE rows (n INTEGER PRIMARY KEY, body TEXT NOT NULL)");
      const body = "x".repeat(1000);
      for (let n = 0; n < 500; n++) {
        await client.batch([{ sql: "INSERT INTO rows VALUES (?, ?)", args: [n, body] }], "write");
      }
      const pass = await client.checkpointNow();
      expect(pass).toMatchObject({ ok: true });
      const { log, checkpointed } = pass as { log: number; checkpointed: number };
      // Every frame of the 500 commits (at least one page each), all copied.
      expect(log).toBeGreaterThanOrEqual(500);
      expect(checkpointed).toBe(log);
      // So the database file alone (no WAL beside it) holds every row.
      copyFileSync(path, join(dir, "alone.db"));
    } finally {
      client.close();
    }
    // Resolves on the worker's exit: it closed its connection and stopped its passes.
    await client.closed;
    const alone = new Database(join(dir, "alone.db"));
    try {
      expect(alone.prepare("SELECT count(*) AS n FROM rows").get()).toMatchObject({ n: 500 });
    } finally {
      alone.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("writes on a worker thread's connection", () => {
  const withClient = async (body: (client: LibsqlFileClient, path: string) => Promise<void>) => {
    const dir = mkdtempSync(join(tmpdir(), "cache-writer-"));
    const path = join(dir, "cache.db");
    const client = new LibsqlFileClient(path, { busyTimeoutMs: 5000, writesOnWorker: true });
    try {
      await client.execute("PRAGMA journal_mode = WAL");
      await client.execute("CREATE TABLE rows (n INTEGER PRIMARY KEY, body TEXT NOT NULL)");
      await body(client, path);
    } finally {
      client.close();
      await client.closed;
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it("a write in flight keeps the process alive, an idle thread does not (a shutdown's last writes)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cache-writer-alive-"));
    try {
      const script = join(dir, "write.mjs");
      writeFileSync(
        script,
        `import { LibsqlFileClient } from ${
          JSON.stringify(new URL("../../src/runtime/libsql-file.ts", import.meta.url).href)
        };
        const client = new LibsqlFileClient(${
          JSON.stringify(join(dir, "cache.db"))
        }, { busyTimeoutMs: 5000, writesOnWorker: true });
        client.batch(["CREATE TABLE rows (n INTEGER PRIMARY KEY)", "INSERT INTO rows VALUES (7)"], "write")
          .then(() => console.log("written"));`,
      );
      const { stdout } = await promisify(execFile)(process.execPath, [script]);
      expect(stdout.trim()).toBe("written");
      const db = new Database(join(dir, "cache.db"));
      try {
        expect(db.prepare("SELECT n FROM rows").get()).toMatchObject({ n: 7 });
      } finally {
        db.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a write batch is one transaction there, read back on this thread once it resolves; reads return rows by name", async () => {
    await withClient(async (client, path) => {
      const written = client.batch([
        { sql: "INSERT INTO rows VALUES (?, ?)", args: [1, "one"] },
        { sql: "INSERT INTO rows VALUES (:n, :body)", args: { n: 2, body: "two" } },
        "SELECT count(*) AS n FROM rows",
      ], "write");
      expect(await written).toEqual([{ rows: [] }, { rows: [] }, { rows: [{ n: 2 }] }]);
      expect(await client.batch(["SELECT n, body FROM rows ORDER BY n"], "read")).toEqual([{
        rows: [{ n: 1, body: "one" }, { n: 2, body: "two" }],
      }]);
      // Another connection sees what the worker committed.
      const other = new Database(path);
      try {
        expect(other.prepare("SELECT count(*) AS n FROM rows").get()).toMatchObject({ n: 2 });
      } finally {
        other.close();
      }
    });
  });

  it("a write waiting for another process's lock leaves this thread free: reads answer meanwhile", async () => {
    await withClient(async (client, path) => {
      await client.batch([{ sql: "INSERT INTO rows VALUES (?, ?)", args: [1, "one"] }], "write");
      // Another connection (another process, as far as SQLite knows) holds the write lock.
      const other = new Database(path);
      try {
        other.exec("BEGIN IMMEDIATE");
        other.exec("INSERT INTO rows VALUES (2, 'theirs')");
        let settled = false;
        const mine = client.batch([{ sql: "INSERT INTO rows VALUES (?, ?)", args: [3, "mine"] }], "write")
          .finally(() => (settled = true));
        // On this thread's connection the write would hold the event loop in SQLite's busy
        // wait until the lock came free, which nothing here could then free: it would fail
        // with SQLITE_BUSY after 5 s. Here reads answer, and timers run, while it waits.
        expect(await client.batch(["SELECT n FROM rows ORDER BY n"], "read")).toEqual([{ rows: [{ n: 1 }] }]);
        await new Promise((resolve) => setImmediate(resolve));
        expect(settled).toBe(false);
        other.exec("COMMIT");
        await mine;
        expect(await client.batch(["SELECT n FROM rows ORDER BY n"], "read")).toEqual([{
          rows: [{ n: 1 }, { n: 2 }, { n: 3 }],
        }]);
      } finally {
        other.close();
      }
    });
  });

  it("a failing statement rolls its whole batch back and fails with SQLite's primary code, as on this thread", async () => {
    await withClient(async (client) => {
      await client.batch([{ sql: "INSERT INTO rows VALUES (?, ?)", args: [1, "one"] }], "write");
      const failed = client.batch([
        { sql: "INSERT INTO rows VALUES (?, ?)", args: [2, "two"] },
        { sql: "INSERT INTO rows VALUES (?, ?)", args: [1, "again"] },
      ], "write");
      await expect(failed).rejects.toMatchObject({ name: "LibsqlError", code: "SQLITE_CONSTRAINT" });
      expect(await client.batch(["SELECT n FROM rows ORDER BY n"], "read")).toEqual([{ rows: [{ n: 1 }] }]);
      // A SQL error is no failure of the connection: the next batch runs.
      await client.batch([{ sql: "INSERT INTO rows VALUES (?, ?)", args: [3, "three"] }], "write");
      expect(await client.batch(["SELECT count(*) AS n FROM rows"], "read")).toEqual([{ rows: [{ n: 2 }] }]);
    });
  });

  it("calls run in the order made; closing fails what was not answered, and every call after, with no SQLite code", async () => {
    await withClient(async (client) => {
      const calls = Array.from({ length: 50 }, (_, n) =>
        client.batch([
          { sql: "INSERT INTO rows VALUES (?, ?)", args: [n, `row ${n}`] },
          "SELECT max(n) AS n FROM rows",
        ], "write"));
      // Each batch saw exactly the ones made before it.
      expect((await Promise.all(calls)).map((results) => results[1]?.rows[0]?.n)).toEqual(
        Array.from({ length: 50 }, (_, n) => n),
      );
      const unanswered = client.batch([{ sql: "INSERT INTO rows VALUES (?, ?)", args: [98, "unanswered"] }], "write");
      client.close();
      const after = client.batch([{ sql: "INSERT INTO rows VALUES (?, ?)", args: [99, "late"] }], "write");
      for (const call of [unanswered, after]) {
        await expect(call).rejects.toThrow(/closed/);
        await expect(call).rejects.not.toHaveProperty("code");
      }
      await client.closed;
    });
  });
});

describe("applies batched per turn", () => {
  it("applies asked for in one turn go in one transaction, each answered with its thread's seq; a failing one fails them all", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cache-batched-"));
    const batches: number[] = [];
    let failNext = false;
    const client = new LibsqlFileClient(join(dir, "cache.db"), { busyTimeoutMs: 5000 });
    const counting = {
      execute: (statement: Parameters<LibsqlFileClient["execute"]>[0]) => client.execute(statement),
      batch: (statements: Parameters<LibsqlFileClient["batch"]>[0], mode: "read" | "write") => {
        if (mode === "write" && statements.some((st) => typeof st !== "string" && /INTO events/.test(st.sql))) {
          batches.push(statements.length);
          if (failNext) {
            failNext = false;
            return Promise.reject(new Error("disk I/O error"));
          }
        }
        return client.batch(statements, mode);
      },
      close: () => client.close(),
    };
    const cache = new LibsqlCache({
      local: true,
      connect: () => counting,
      batchApplies: (flush) => setImmediate(flush),
    });
    try {
      const threads = ["b-1", "b-2", "b-3"].map((id) => new History(id));
      for (const t of threads) t.add("note", null, { n: 1 });
      // b-2's second commit asked for before its first: it cannot land on top of nothing.
      threads[1]?.add("note", null, { n: 2 });
      const seqs = await Promise.all([
        cache.apply("t", asCommits(threads[0]!.range(1, 1))),
        cache.apply("t", asCommits(threads[1]!.range(2, 2))),
        cache.apply("t", asCommits(threads[1]!.range(1, 1))),
        cache.apply("t", asCommits(threads[2]!.range(1, 1))),
      ]);
      expect(batches).toHaveLength(1);
      // Each caller learns where its thread stands after the whole batch: b-2 at 1 (its 2 did not land).
      expect(seqs).toEqual([1, 1, 1, 1]);
      expect(await cache.apply("t", asCommits(threads[1]!.range(2, 2)))).toBe(2);
      expect(batches).toHaveLength(2);

      failNext = true;
      threads[0]?.add("note", null, { n: 2 });
      threads[2]?.add("note", null, { n: 2 });
      const failed = await Promise.allSettled([
        cache.apply("t", asCommits(threads[0]!.range(2, 2))),
        cache.apply("t", asCommits(threads[2]!.range(2, 2))),
      ]);
      expect(failed.map((r) => r.status)).toEqual(["rejected", "rejected"]);
      expect(batches).toHaveLength(3);
    } finally {
      cache.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a cache of another schema version", () => {
  it("is replaced on first use (its rows dropped, the runtime told to rebuild it), once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cache-old-"));
    const path = join(dir, "cache.db");
    try {
      // The threads table as an earlier build made it (no version), with a row.
      const db = new Database(path);
      db.exec(`CREATE TABLE threads (tenant TEXT NOT NULL, thread_id TEXT NOT NULL, created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL, seq INTEGER NOT NULL, event_floor INTEGER NOT NULL DEFAULT 0, installer TEXT,
        PRIMARY KEY (tenant, thread_id)) WITHOUT ROWID`);
      db.exec(
        `INSERT INTO threads VALUES ('t', 'old', '2024-01-01T00:00:00.000Z', '2024-01-01T00:00:00.000Z', 3, 0, NULL)`,
      );
      db.close();
      let resets = 0;
      const open = () =>
        new LibsqlCache({
          local: true,
          connect: () => new LibsqlFileClient(path, { busyTimeoutMs: 5000 }),
          onReset: () => resets++,
        });
      const cache = open();
      // Its rows are gone (rebuilt from the rollout later); the current schema is in place.
      expect(await cache.seq("t", "old")).toBe(0);
      expect(resets).toBe(1);
      const fork = { threadId: "src", seq: 3 };
      const state = {
        threadId: "forked",
        createdAt: "2024-01-01T00:00:00.000Z",
        updatedAt: "2024-01-01T00:00:00.000Z",
        seq: 1,
        artifacts: [],
        forkedFrom: fork,
      };
      expect(await cache.install("t", state)).toBe(1);
      cache.close();
      // Opening it again finds the current version: nothing replaced.
      const again = open();
      expect(await again.readThread("t", "forked")).toEqual(state);
      expect(resets).toBe(1);
      again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
