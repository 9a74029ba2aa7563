import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "libsql";
import { describe, expect, it } from "vitest";
import { LibsqlCache } from "../../src/cache/libsql.ts";
import { LibsqlFileClient } from "../../src/runtime/libsql-file.ts";
import { describeCacheContract } from "./cache-contract.ts";

describeCacheContract("file: URL, the prepared-statement file client of Node and Deno", async ({ retryAfterMs }) => {
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
    connect: () => {
      connects++;
      const client = new LibsqlFileClient(down ? unreachable : path, { busyTimeoutMs: 5000 });
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
      rmSync(dir, { recursive: true, force: true });
    },
  };
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
