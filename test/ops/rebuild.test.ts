/**
 * `npm run rebuild` (src/runtime/rebuild.ts) as a real child process over the data a
 * real server wrote: the libSQL cache is recreated from the rollout for every thread
 * of every tenant, or one tenant, or one thread; a second run changes nothing; an
 * interrupted run is completed by the next one; an unreachable cache is a clear failure.
 */
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { beforeAll, describe, expect, it } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import { LibsqlCache } from "../../src/cache/libsql.ts";
import { toEvent } from "../../src/model/patch.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { runRebuild } from "../../src/runtime/rebuild.ts";
import { ArtifactService } from "../../src/service/artifact-service.ts";
import {
  closedPort,
  deleteCacheFile,
  http,
  range,
  readCacheFile,
  readRollout,
  replay,
  threadView,
  useCluster,
} from "../support/cluster.ts";
import { cachedSeqs, dumpCache, runRebuildProcess } from "../support/ops.ts";
import type { ServerProcess } from "../support/server-process.ts";

const cluster = useCluster();

let deadLibsqlUrl: string;
beforeAll(async () => {
  deadLibsqlUrl = `http://127.0.0.1:${await closedPort()}`;
});

const TOKENS: Record<string, string> = { acme: "token-acme", globex: "token-globex" };
const AUTH_TOKENS = Object.entries(TOKENS)
  .map(([tenant, token]) => `${token}:${tenant}`)
  .join(",");
const COMPACT_EVERY = 4;
const auth = (tenant: string) => ({ authorization: `Bearer ${TOKENS[tenant]}` });

/** Threads per tenant and how many patches each gets: heads before, on and past a compaction boundary. */
const LAYOUT: Record<string, Record<string, number>> = {
  acme: { "a-1": 9, "a-2": 4, "a-3": 1 },
  globex: { "g-1": 6, "g-2": 2 },
};
const ALL_THREADS = Object.entries(LAYOUT).flatMap(([tenant, threads]) =>
  Object.entries(threads).map(([threadId, n]) => ({ tenant, threadId, n }))
);

/**
 * Appends patches `from`..`to` to a thread through the API: creates (with and without
 * identity), updates, a remove: patch i is always the same kind of write.
 */
async function writePatches(
  server: ServerProcess,
  tenant: string,
  threadId: string,
  from: number,
  to: number,
): Promise<void> {
  const base = `/v1/threads/${threadId}/artifacts`;
  const find = async (artifactType: string) => {
    const read = await http(server.url, "GET", `/v1/threads/${threadId}`, undefined, auth(tenant));
    return read.json.thread.artifacts.find((a: { artifactType: string }) => a.artifactType === artifactType)
      .id as string;
  };
  for (const i of range(to - from + 1, from)) {
    let r;
    if (i === 1) {
      r = await http(
        server.url,
        "POST",
        base,
        { artifactType: "plan", identityKey: "plan:main", payload: { step: i } },
        auth(tenant),
      );
    } else if (i === 2) {
      r = await http(server.url, "POST", base, { artifactType: "scratch", payload: { i } }, auth(tenant));
    } else if (i === 4) {
      r = await http(server.url, "DELETE", `${base}/${await find("scratch")}`, undefined, auth(tenant));
    } else if (i % 2 === 1) {
      r = await http(
        server.url,
        "PATCH",
        `${base}/${await find("plan")}`,
        { payload: { step: i, tenant } },
        auth(tenant),
      );
    } else {r = await http(server.url, "POST", base, {
        artifactType: "note",
        payload: { i, text: `${tenant} ${threadId} #${i}` },
      }, auth(tenant));}
    expect(r.status, r.text).toBeLessThan(300);
    expect(r.json.thread.rolloutSeq).toBe(i);
  }
}

function env(dir: string, extra: Record<string, string> = {}): Record<string, string> {
  return { DATA_DIR: dir, COMPACT_EVERY: String(COMPACT_EVERY), AUTH_TOKENS, ...extra };
}

const SUMMARY =
  /^rebuild: (\d+) threads? \((\d+) rebuilt, (\d+) already at head, (\d+) failed\), (\d+) patch(?:es)? applied, \d+\.\d s$/;

function summaryOf(lines: string[]) {
  const match = SUMMARY.exec(lines[lines.length - 1] ?? "");
  expect(match, `no summary line in:\n${lines.join("\n")}`).not.toBeNull();
  const [threads, rebuilt, atHead, failed, applied] = match!.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  return { threads, rebuilt, atHead, failed, applied };
}

/** The cache rows of a thread after a rebuild from its compacted base: state = replay, events after the base. */
async function expectRebuiltRows(dbPath: string, rolloutDir: string, tenant: string, threadId: string, n: number) {
  const patches = await readRollout(rolloutDir, threadId, tenant);
  expect(patches.map((p) => p.seq)).toEqual(range(n));
  const truth = await replay(rolloutDir, threadId, tenant);
  // The base a fresh cache is installed from: where the compaction pointer stands.
  const floor = (await new Rollout(new FsBlobStore(rolloutDir)).compaction.readPointer(tenant, threadId))?.seq ?? 0;
  expect(floor).toBeGreaterThanOrEqual(Math.floor(n / COMPACT_EVERY) * COMPACT_EVERY);
  const rows = await readCacheFile(dbPath, threadId, tenant);
  expect(rows.thread).toEqual({ createdAt: truth.createdAt, updatedAt: truth.updatedAt, seq: n });
  expect(rows.artifacts).toEqual(truth.artifacts);
  expect(rows.events).toEqual(patches.filter((p) => p.seq > floor).map((p) => ({ seq: p.seq, data: toEvent(p) })));
}

describe("npm run rebuild", () => {
  it("recreates a deleted cache for every thread of every tenant; a second run changes nothing", async () => {
    const { dir, rolloutDir, dbPath } = cluster.dataDir();
    const first = await cluster.start(env(dir));
    for (const { tenant, threadId, n } of ALL_THREADS) await writePatches(first, tenant, threadId, 1, n);
    await first.stop();
    deleteCacheFile(dbPath);

    const run = await runRebuildProcess(env(dir));
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    // One line per thread (in completion order), then the summary.
    expect(run.lines.slice(0, -1).sort()).toEqual(
      ALL_THREADS.map(({ tenant, threadId, n }) =>
        `${tenant}/${threadId}: rebuilt 0 -> ${n} (${n === 1 ? "1 patch" : `${n} patches`})`
      ).sort(),
    );
    const total = ALL_THREADS.reduce((sum, t) => sum + t.n, 0);
    expect(summaryOf(run.lines)).toEqual({
      threads: ALL_THREADS.length,
      rebuilt: ALL_THREADS.length,
      atHead: 0,
      failed: 0,
      applied: total,
    });
    for (const { tenant, threadId, n } of ALL_THREADS) await expectRebuiltRows(dbPath, rolloutDir, tenant, threadId, n);

    // Idempotent: nothing applied, not one row changed.
    const before = await dumpCache(dbPath);
    expect(before.threads).toHaveLength(ALL_THREADS.length);
    const again = await runRebuildProcess(env(dir));
    expect(again.code).toBe(0);
    expect(again.stderr).toBe("");
    expect(again.lines.slice(0, -1).sort()).toEqual(
      ALL_THREADS.map(({ tenant, threadId, n }) => `${tenant}/${threadId}: already at head (seq ${n})`).sort(),
    );
    expect(summaryOf(again.lines)).toEqual({
      threads: ALL_THREADS.length,
      rebuilt: 0,
      atHead: ALL_THREADS.length,
      failed: 0,
      applied: 0,
    });
    expect(await dumpCache(dbPath)).toEqual(before);

    // A server on the rebuilt cache answers every thread from the cache, equal to a replay,
    // and lists each tenant's threads (which only the cache can do).
    const second = await cluster.start(env(dir));
    for (const { tenant, threadId, n } of ALL_THREADS) {
      const truth = await replay(rolloutDir, threadId, tenant);
      for (const consistency of ["cache", "strong"]) {
        const read = await http(
          second.url,
          "GET",
          `/v1/threads/${threadId}?consistency=${consistency}`,
          undefined,
          auth(tenant),
        );
        expect(read.status, read.text).toBe(200);
        expect(read.headers.get("x-artifacts-source")).toBe("cache");
        expect(read.headers.get("etag")).toBe(`"${n}"`);
        expect(read.json).toEqual({ thread: threadView(truth) });
      }
    }
    for (const [tenant, threads] of Object.entries(LAYOUT)) {
      const list = await http(second.url, "GET", "/v1/threads?limit=200", undefined, auth(tenant));
      expect(list.status).toBe(200);
      expect(list.json.threads.map((t: { id: string }) => t.id).sort()).toEqual(Object.keys(threads).sort());
    }
    // Writing continues on top of the rebuilt cache, at the next seq.
    const next = await http(second.url, "POST", "/v1/threads/a-2/artifacts", {
      artifactType: "note",
      payload: "after rebuild",
    }, auth("acme"));
    expect(next.status).toBe(201);
    expect(next.json.thread.rolloutSeq).toBe(LAYOUT.acme!["a-2"]! + 1);
  });

  it("--thread rebuilds only that thread, --tenant only that tenant's threads, while a server runs", async () => {
    const { dir, rolloutDir, dbPath } = cluster.dataDir();
    const withCache = await cluster.start(env(dir));
    const targets = [
      { tenant: "acme", threadId: "a-1" },
      { tenant: "acme", threadId: "a-2" },
      { tenant: "globex", threadId: "g-1" },
    ];
    for (const { tenant, threadId } of targets) await writePatches(withCache, tenant, threadId, 1, 3);
    // A second process on the same rollout without a reachable cache: its writes leave the cache behind.
    const cacheless = await cluster.start(env(dir, { BLOB_STORE: `fs:${rolloutDir}`, LIBSQL_URL: deadLibsqlUrl }));
    for (const { tenant, threadId } of targets) await writePatches(cacheless, tenant, threadId, 4, 6);
    expect(await cachedSeqs(dbPath)).toEqual({ "acme/a-1": 3, "acme/a-2": 3, "globex/g-1": 3 });

    const one = await runRebuildProcess(env(dir), ["--tenant", "acme", "--thread", "a-1"]);
    expect(one.code, one.stderr).toBe(0);
    expect(one.lines.slice(0, -1)).toEqual(["acme/a-1: rebuilt 3 -> 6 (3 patches)"]);
    expect(summaryOf(one.lines)).toEqual({ threads: 1, rebuilt: 1, atHead: 0, failed: 0, applied: 3 });
    expect(await cachedSeqs(dbPath)).toEqual({ "acme/a-1": 6, "acme/a-2": 3, "globex/g-1": 3 });

    const tenant = await runRebuildProcess(env(dir), ["--tenant=acme"]);
    expect(tenant.code, tenant.stderr).toBe(0);
    expect(tenant.lines.slice(0, -1).sort()).toEqual([
      "acme/a-1: already at head (seq 6)",
      "acme/a-2: rebuilt 3 -> 6 (3 patches)",
    ]);
    expect(await cachedSeqs(dbPath)).toEqual({ "acme/a-1": 6, "acme/a-2": 6, "globex/g-1": 3 });

    const all = await runRebuildProcess(env(dir));
    expect(all.code, all.stderr).toBe(0);
    expect(all.lines.slice(0, -1).sort()).toEqual([
      "acme/a-1: already at head (seq 6)",
      "acme/a-2: already at head (seq 6)",
      "globex/g-1: rebuilt 3 -> 6 (3 patches)",
    ]);
    expect(summaryOf(all.lines)).toEqual({ threads: 3, rebuilt: 1, atHead: 2, failed: 0, applied: 3 });

    // Caught up commit by commit (no base install): every row and every event is there.
    for (const { tenant, threadId } of targets) {
      const patches = await readRollout(rolloutDir, threadId, tenant);
      const rows = await readCacheFile(dbPath, threadId, tenant);
      expect(rows.artifacts).toEqual((await replay(rolloutDir, threadId, tenant)).artifacts);
      expect(rows.events).toEqual(patches.map((p) => ({ seq: p.seq, data: toEvent(p) })));
      const read = await http(
        withCache.url,
        "GET",
        `/v1/threads/${threadId}?consistency=cache`,
        undefined,
        auth(tenant),
      );
      expect(read.headers.get("x-artifacts-source")).toBe("cache");
      expect(read.json).toEqual({ thread: threadView(await replay(rolloutDir, threadId, tenant)) });
    }

    // A thread the rollout does not have is a failure of that thread, not a silent success.
    const missing = await runRebuildProcess(env(dir), ["--tenant", "acme", "--thread", "no-such-thread"]);
    expect(missing.code).toBe(1);
    expect(missing.lines[0]).toMatch(/^acme\/no-such-thread: FAILED: .*no patch/);
    expect(summaryOf(missing.lines)).toMatchObject({ threads: 1, failed: 1, applied: 0 });
    expect(await cachedSeqs(dbPath)).toEqual({ "acme/a-1": 6, "acme/a-2": 6, "globex/g-1": 6 });
  });

  it("an interrupted run (kill -9) is completed by the next one, which skips the threads already done", async () => {
    const { dir, rolloutDir, dbPath } = cluster.dataDir();
    const THREADS = 200;
    const PATCHES = 5;
    // The rollout, written in this process by the real service (its scratch cache is thrown away).
    const scratch = cluster.tempDir();
    const cache = new LibsqlCache({
      connect: () => createClient({ url: `file:${join(scratch, "scratch.db")}` }),
      local: true,
    });
    const service = new ArtifactService({
      rollout: new Rollout(new FsBlobStore(rolloutDir)),
      cache,
      limits: { maxPayloadBytes: 65536, maxArtifactsPerThread: 1000 },
    });
    const ids = range(THREADS).map((i) => `t-${String(i).padStart(3, "0")}`);
    let nextThread = 0;
    await Promise.all(
      range(8).map(async () => {
        while (nextThread < ids.length) {
          const threadId = ids[nextThread++] as string;
          for (const i of range(PATCHES)) {
            await service.write("local", threadId, {
              kind: "create",
              artifactType: "note",
              identityKey: null,
              payload: { i },
            });
          }
        }
      }),
    );
    cache.close();

    const interrupted = await runRebuildProcess({ DATA_DIR: dir }, ["--concurrency", "1"], { killAfterLines: 1 });
    expect(interrupted.signal).toBe("SIGKILL");
    const doneBefore = interrupted.lines.filter((line) => line.includes(": rebuilt 0 -> 5"));
    expect(doneBefore.length).toBeGreaterThanOrEqual(1);
    expect(doneBefore.length).toBeLessThan(THREADS);

    const resumed = await runRebuildProcess({ DATA_DIR: dir });
    expect(resumed.code, resumed.stderr).toBe(0);
    const summary = summaryOf(resumed.lines);
    expect(summary.threads).toBe(THREADS);
    expect(summary.rebuilt + summary.atHead).toBe(THREADS);
    // Every thread the first run reported is skipped (at least those; one in flight may have landed too).
    expect(summary.atHead).toBeGreaterThanOrEqual(doneBefore.length);
    for (const line of doneBefore) {
      expect(resumed.lines).toContain(line.replace(/: rebuilt 0 -> 5 .*/, ": already at head (seq 5)"));
    }
    // The threads left are rebuilt from nothing, except at most the one in flight at the
    // kill (--concurrency 1), which may have landed partly (its compacted base installed, not its tail).
    const rebuiltLines = resumed.lines.filter((line) => line.includes(": rebuilt "));
    expect(rebuiltLines).toHaveLength(summary.rebuilt);
    const partial = rebuiltLines.filter((line) => !line.includes(": rebuilt 0 -> 5 (5 patches)"));
    expect(partial.length).toBeLessThanOrEqual(1);
    for (const line of partial) expect(line).toMatch(/: rebuilt [1-4] -> 5 \([1-4] patch(es)?\)$/);
    const appliedByLines = rebuiltLines.reduce((sum, line) => sum + Number(/\((\d+) patch/.exec(line)![1]), 0);
    expect(summary.applied).toBe(appliedByLines);
    expect(await cachedSeqs(dbPath)).toEqual(Object.fromEntries(ids.map((id) => [`local/${id}`, PATCHES])));
    for (const threadId of [ids[0], ids[99], ids[199]] as string[]) {
      expect((await readCacheFile(dbPath, threadId)).artifacts).toEqual((await replay(rolloutDir, threadId)).artifacts);
    }

    const third = await runRebuildProcess({ DATA_DIR: dir });
    expect(summaryOf(third.lines)).toEqual({ threads: THREADS, rebuilt: 0, atHead: THREADS, failed: 0, applied: 0 });
  });

  it("an unreachable cache fails fast with a clear message and exit code 1; bad arguments exit 2", async () => {
    const dir = cluster.tempDir();
    const server = await cluster.start({ DATA_DIR: dir });
    expect((await http(server.url, "POST", "/v1/threads/t/artifacts", { artifactType: "note", payload: 1 })).status)
      .toBe(201);

    const down = await runRebuildProcess({ DATA_DIR: dir, LIBSQL_URL: `${deadLibsqlUrl}/?authToken=secret` });
    expect(down.code).toBe(1);
    expect(down.lines).toEqual([]);
    expect(down.stderr).toContain("the libSQL cache is unreachable");
    expect(down.stderr).toContain(`LIBSQL_URL=${deadLibsqlUrl}`);
    expect(down.stderr).not.toContain("secret");

    const bad = await runRebuildProcess({ DATA_DIR: dir }, ["--thread", "t"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^rebuild: --thread needs --tenant\nusage: npm run rebuild/);
    expect(bad.lines).toEqual([]);
    for (const args of [["--tenant", "../x"], ["--bogus"], ["--concurrency", "0"], ["--tenant"]]) {
      let stdout = "";
      let stderr = "";
      const code = await runRebuild(args, { DATA_DIR: dir }, {
        stdout: { write: (t: string) => (stdout += t) },
        stderr: { write: (t: string) => (stderr += t) },
      });
      expect(code, args.join(" ")).toBe(2);
      expect(stderr).toMatch(/^rebuild: .*\nusage: npm run rebuild/);
      expect(stdout).toBe("");
    }
  });

  it("on a terminal: one progress line rewritten in place, then the summary", async () => {
    const { dir, dbPath } = cluster.dataDir();
    const server = await cluster.start({ DATA_DIR: dir });
    for (const threadId of ["x", "y", "z"]) {
      for (const i of range(2)) {
        expect(
          (await http(server.url, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "note", payload: i }))
            .status,
        ).toBe(201);
      }
    }
    await server.stop();
    deleteCacheFile(dbPath);

    let stdout = "";
    let stderr = "";
    const code = await runRebuild([], { DATA_DIR: dir }, {
      stdout: { isTTY: true, write: (text: string) => (stdout += text) },
      stderr: { write: (text: string) => (stderr += text) },
    });
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const [progress, summary, rest] = stdout.split("\n");
    expect(rest).toBe("");
    // Every redraw starts at column 0 and clears the line; the last one shows everything done.
    const frames = (progress as string).split("\r\x1b[K");
    expect(frames[0]).toBe("");
    expect(frames[1]).toBe("rebuild: 0/3 threads, 0 patches applied");
    expect(frames[frames.length - 1]).toBe("rebuild: 3/3 threads, 6 patches applied");
    for (const frame of frames.slice(1)) expect(frame).toMatch(/^rebuild: [0-3]\/3 threads, \d patches applied$/);
    expect(summary).toMatch(
      /^rebuild: 3 threads \(3 rebuilt, 0 already at head, 0 failed\), 6 patches applied, \d+\.\d s$/,
    );
    expect(stdout).not.toMatch(/local\/[xyz]/);
    expect(await cachedSeqs(dbPath)).toEqual({ "local/x": 2, "local/y": 2, "local/z": 2 });
  });
});
