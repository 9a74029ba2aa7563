/**
 * libSQL goes away for a while and comes back, with a real server process whose cache
 * is libSQL over HTTP (the Hrana test server over a real file, stopped and restarted on
 * the same port). While it is down, writes keep succeeding and reads are served from
 * the rollout; once it is back, the first write or strong read that finds the cache
 * behind repairs it, and cache-only reads equal the replay again; with no request at
 * all, the server repairs the threads it wrote during the outage by itself.
 *
 * The cache has a breaker (after a failure, calls fail fast for 1 s), so the test waits
 * on conditions with deadlines, never for fixed times.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  committedSeqs,
  expectedCacheRows,
  http,
  range,
  readCacheFile,
  readRollout,
  replay,
  threadView,
  useCluster,
} from "../support/cluster.ts";
import { type HranaServer, startHranaServer } from "../support/hrana-server.ts";
import { waitFor } from "../support/wait.ts";
import type { ServerProcess } from "../support/server-process.ts";

let hrana: HranaServer | undefined;
afterEach(async () => {
  await hrana?.close();
  hrana = undefined;
});
// Registered after the hook above, so it runs before it: the server stops before libSQL does.
const cluster = useCluster();

const threadId = "outage";

async function create(server: ServerProcess, payload: unknown): Promise<number> {
  const r = await http(server.url, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "note", payload });
  expect(r.status, r.text).toBe(201);
  return r.json.artifact.seq;
}

/** Once the cache answers again (not the rollout fallback), without a strong read or a write forcing anything. */
function cacheAnswersAgain(server: ServerProcess) {
  return waitFor("the cache to answer again", async () => {
    const r = await http(server.url, "GET", `/v1/threads/${threadId}?consistency=cache`);
    expect(r.status).toBe(200);
    return r.headers.get("x-artifacts-source") === "cache" ? r : undefined;
  });
}

describe("libSQL unavailable for a while (Hrana server stopped, then restarted on the same port)", () => {
  it("writes keep succeeding, reads come from the rollout; back up, the cache is repaired by the next strong read, the next write, or by itself", async () => {
    const { dir, rolloutDir } = cluster.dataDir();
    const dbPath = join(dir, "cache.db");
    hrana = await startHranaServer({ path: dbPath });
    const port = hrana.port;
    const server = await cluster.start({ DATA_DIR: dir, LIBSQL_URL: hrana.url, COMPACT_EVERY: "4" });

    let seq = 0;
    for (let i = 1; i <= 3; i++) seq = await create(server, { phase: "up", i });
    const warm = await http(server.url, "GET", `/v1/threads/${threadId}?consistency=cache`);
    expect(warm.headers.get("x-artifacts-source")).toBe("cache");
    expect((await readCacheFile(dbPath, threadId)).thread?.seq).toBe(3);

    // --- Outage 1: healed by a strong read.
    await hrana.close();
    for (let i = 1; i <= 6; i++) expect(await create(server, { phase: "down-1", i })).toBe(++seq);
    const downHealth = await http(server.url, "GET", "/healthz");
    expect(downHealth.json).toEqual({ ok: true, cache: "down", rollout: "up" });
    for (const consistency of ["strong", "cache"]) {
      const read = await http(server.url, "GET", `/v1/threads/${threadId}?consistency=${consistency}`);
      expect(read.status).toBe(200);
      expect(read.headers.get("x-artifacts-source")).toBe("rollout");
      expect(read.json).toEqual({ thread: threadView(await replay(rolloutDir, threadId)) });
    }
    // Nothing reached the libSQL file while it was down.
    expect((await readCacheFile(dbPath, threadId)).thread?.seq).toBe(3);

    hrana = await startHranaServer({ path: dbPath, port });
    await waitFor(
      "healthz to report the cache up",
      async () => ((await http(server.url, "GET", "/healthz")).json.cache === "up" ? true : undefined),
    );
    await cacheAnswersAgain(server);
    const healed = await http(server.url, "GET", `/v1/threads/${threadId}`);
    expect(healed.headers.get("x-artifacts-source")).toBe("repaired");
    expect(healed.json).toEqual({ thread: threadView(await replay(rolloutDir, threadId)) });
    expect(healed.json.thread.rolloutSeq).toBe(seq);
    const afterRead = await http(server.url, "GET", `/v1/threads/${threadId}?consistency=cache`);
    expect(afterRead.headers.get("x-artifacts-source")).toBe("cache");
    expect(afterRead.json).toEqual(healed.json);

    // --- Outage 2: healed by the next write (decided on the rollout head, not on the stale cache).
    await hrana.close();
    for (let i = 1; i <= 5; i++) expect(await create(server, { phase: "down-2", i })).toBe(++seq);
    const whileDown = await http(server.url, "GET", `/v1/threads/${threadId}`);
    expect(whileDown.headers.get("x-artifacts-source")).toBe("rollout");
    expect(whileDown.json.thread.rolloutSeq).toBe(seq);
    expect((await readCacheFile(dbPath, threadId)).thread?.seq).toBe(9);

    hrana = await startHranaServer({ path: dbPath, port });
    await cacheAnswersAgain(server);
    expect(await create(server, { phase: "back" })).toBe(++seq);
    const truth = await replay(rolloutDir, threadId);
    const cached = await http(server.url, "GET", `/v1/threads/${threadId}?consistency=cache`);
    expect(cached.headers.get("x-artifacts-source")).toBe("cache");
    expect(cached.json).toEqual({ thread: threadView(truth) });
    expect(cached.json.thread.rolloutSeq).toBe(seq);

    // --- Outage 3: healed by itself. No request at all once libSQL is back: the server
    // repairs the threads it wrote while the cache was down, in the background.
    await hrana.close();
    for (let i = 1; i <= 4; i++) expect(await create(server, { phase: "down-3", i })).toBe(++seq);
    expect((await readCacheFile(dbPath, threadId)).thread?.seq).toBe(seq - 4);
    hrana = await startHranaServer({ path: dbPath, port });
    const healedAlone = await waitFor("the cache file to reach the rollout head", async () => {
      const rows = await readCacheFile(dbPath, threadId);
      return rows.thread?.seq === seq ? rows : undefined;
    });
    expect(healedAlone).toEqual(expectedCacheRows(await readRollout(rolloutDir, threadId)));
    const cachedAlone = await http(server.url, "GET", `/v1/threads/${threadId}?consistency=cache`);
    expect(cachedAlone.headers.get("x-artifacts-source")).toBe("cache");
    expect(cachedAlone.json).toEqual({ thread: threadView(await replay(rolloutDir, threadId)) });

    // The rollout holds every write once; the cache holds it all, events included.
    expect(committedSeqs(rolloutDir, threadId)).toEqual(range(seq));
    expect(await readCacheFile(dbPath, threadId)).toEqual(expectedCacheRows(await readRollout(rolloutDir, threadId)));
  });
});
