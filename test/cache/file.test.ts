import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "libsql";
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
