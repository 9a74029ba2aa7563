import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient } from "@libsql/client/web";
import Database from "libsql";
import { afterEach, describe, expect, it } from "vitest";
import { LibsqlCache } from "../../src/cache/libsql.ts";
import { asCommits } from "./cache-contract.ts";
import { CacheUnavailableError } from "../../src/cache/port.ts";
import { type HranaServer, startHranaServer } from "../support/hrana-server.ts";
import { describeCacheContract, History } from "./cache-contract.ts";

interface HttpCache {
  cache: LibsqlCache;
  server: () => HranaServer;
  path: string;
  connects: () => number;
  outage(): Promise<void>;
  restore(): Promise<void>;
  dispose(): Promise<void>;
}

async function httpCache(
  options: { retryAfterMs: number; authToken?: string; clientToken?: string },
): Promise<HttpCache> {
  const dir = mkdtempSync(join(tmpdir(), "cache-http-"));
  const path = join(dir, "cache.db");
  const serverOptions = { path, ...(options.authToken ? { authToken: options.authToken } : {}) };
  let server = await startHranaServer(serverOptions);
  const url = server.url; // the same address across restarts
  let connects = 0;
  const clients: Client[] = [];
  const cache = new LibsqlCache({
    local: false,
    retryAfterMs: options.retryAfterMs,
    connect: () => {
      connects++;
      const client = createClient({ url, ...(options.clientToken ? { authToken: options.clientToken } : {}) });
      clients.push(client);
      return client;
    },
  });
  return {
    cache,
    server: () => server,
    path,
    connects: () => connects,
    outage: () => server.close(),
    async restore() {
      server = await startHranaServer({ ...serverOptions, port: server.port });
    },
    async dispose() {
      cache.close();
      for (const client of clients) client.close();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describeCacheContract("http:// URL, @libsql/client/web against a Hrana server", async ({ retryAfterMs }) => {
  const h = await httpCache({ retryAfterMs });
  return {
    cache: h.cache,
    get connects() {
      return h.connects();
    },
    outage: h.outage,
    restore: h.restore,
    exec(sql: string) {
      const db = new Database(h.path);
      try {
        db.exec(sql);
      } finally {
        db.close();
      }
    },
    dispose: h.dispose,
  };
});

describe("LibsqlCache over HTTP", () => {
  const opened: HttpCache[] = [];
  afterEach(async () => {
    for (const h of opened.splice(0)) await h.dispose();
  });
  const open = async (options: Parameters<typeof httpCache>[0]) => {
    const h = await httpCache(options);
    opened.push(h);
    return h;
  };

  it("makes one HTTP request per call and leaves no stream open", async () => {
    const h = await open({ retryAfterMs: 20 });
    const t = new History("one-trip");
    const a = t.add("plan", "k", { v: 1 });
    t.update(a, { v: 2 });
    expect(await h.cache.seq("t", t.threadId)).toBe(0); // connects and puts the schema in place
    const server = h.server();
    const calls: (() => Promise<unknown>)[] = [
      () => h.cache.apply("t", asCommits(t.patches)),
      () => h.cache.readThread("t", t.threadId),
      () => h.cache.writeContext("t", t.threadId, [{ by: "identity", artifactType: "plan", identityKey: "k" }]),
      () => h.cache.getArtifact("t", t.threadId, a.id),
      () => h.cache.listThreads("t", { after: null, limit: 10 }),
      () => h.cache.events("t", t.threadId, 0, 10),
      () => h.cache.install("t", { ...t.state, threadId: "other" }),
      () => h.cache.ping(),
    ];
    for (const call of calls) {
      const before = server.requests;
      await call();
      expect(server.requests - before).toBe(1);
      expect(server.openStreams).toBe(0);
    }
    // And it is all in the file.
    const db = new Database(h.path);
    try {
      expect(db.prepare("SELECT thread_id, seq FROM threads ORDER BY thread_id").raw(true).all()).toEqual([
        ["one-trip", 2],
        ["other", 2],
      ]);
      expect(db.prepare("SELECT count(*) FROM events").raw(true).all()).toEqual([[2]]);
    } finally {
      db.close();
    }
  });

  it("sends the auth token; a wrong one makes the cache unavailable", async () => {
    const good = await open({ retryAfterMs: 20, authToken: "tok", clientToken: "tok" });
    expect(await good.cache.seq("t", "x")).toBe(0);
    const bad = await open({ retryAfterMs: 20, authToken: "tok", clientToken: "nope" });
    await expect(bad.cache.seq("t", "x")).rejects.toBeInstanceOf(CacheUnavailableError);
    const none = await open({ retryAfterMs: 20, authToken: "tok" });
    await expect(none.cache.seq("t", "x")).rejects.toBeInstanceOf(CacheUnavailableError);
  });
});
