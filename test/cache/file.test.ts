import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient } from "@libsql/client";
import Database from "libsql";
import { LibsqlCache } from "../../src/cache/libsql.ts";
import { describeCacheContract } from "./cache-contract.ts";

describeCacheContract("file: URL, native @libsql/client", async ({ retryAfterMs }) => {
  const dir = mkdtempSync(join(tmpdir(), "cache-file-"));
  const path = join(dir, "cache.db");
  const url = `file:${path}`;
  // While "down", connect() points into a folder that does not exist: SQLITE_CANTOPEN.
  const unreachable = `file:${join(dir, "missing", "cache.db")}`;
  let down = false;
  let connects = 0;
  const clients: Client[] = [];
  const cache = new LibsqlCache({
    local: true,
    retryAfterMs,
    connect: () => {
      connects++;
      const client = createClient({ url: down ? unreachable : url, concurrency: 1 });
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
