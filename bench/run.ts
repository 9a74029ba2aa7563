/**
 * `npm run bench` (full) and `npm run bench -- --quick` (every scenario, shorter).
 *
 * Runs every scenario against our server, the floors (bench/servers/floor.ts) and the
 * Durable Streams reference server, one server at a time (2 cores: nothing else
 * competes), with the load in separate processes (bench/load/*.ts), all on 127.0.0.1.
 * Every loop is bounded in count and time, and the whole run has a deadline.
 * Prints a markdown table, writes it to bench/results/latest.md and the raw numbers to
 * bench/results/<mode>-<date>.json (gitignored). Never part of `npm test`.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { HttpConfig, HttpResult, HttpRun } from "./load/http.ts";
import type { ProbeResult } from "./load/probe.ts";
import type { SseResult } from "./load/sse.ts";
import { fsProbe } from "./lib/fs-probe.ts";
import { createBody } from "./lib/payload.ts";
import {
  closedPort,
  cpuMs,
  killAllChildren,
  type LoadWorker,
  ROOT,
  rssBytes,
  type ServerProcess,
  sleep,
  startLoadWorker,
  startServer,
} from "./lib/process.ts";
import { type ColdThread, type ColdThreadSpec, prepareColdRollouts } from "./lib/prepare-rollout.ts";
import { readdirSync, readFileSync, unlinkSync } from "node:fs";
import { percentile } from "./lib/stats.ts";
import type { S3Backend } from "./load/stores.ts";
import { benchEdge, type EdgeCosts, edgeCostsReport, edgeLimitsReport, type EdgeResult } from "./edge.ts";
import { benchMany, type ManyResult, reportMany } from "./many.ts";
import { benchObservability, type ObsRow } from "./obs.ts";
import { benchSlowReaders, reportSlow, SLOW_PARAMS, type SlowRow } from "./slow-readers.ts";
import { benchTenants, type TenantsParams, tenantsReport, type TenantsRow } from "./tenants.ts";
import { benchWebhooks, type WebhooksParams, webhooksReport, type WebhooksRows } from "./webhooks.ts";

const quick = process.argv.includes("--quick");
/** `--edge-s3=s3rver`: the edge run's S3 server over s3rver instead of memory (bench/load/stores.ts). */
const edgeS3: S3Backend = process.argv.includes("--edge-s3=s3rver") ? "s3rver" : "memory";
const SCENARIOS = [
  "create",
  "read",
  "sse",
  "many",
  "cold",
  "rss",
  "slow",
  "obs",
  "edge",
  "tenants",
  "webhooks",
] as const;
type Scenario = (typeof SCENARIOS)[number];
/**
 * `--obs-against=<rev>`: the obs scenario judges no goal but compares every span on the
 * code at `rev` with every span on this checkout, each paired with the defaults (a worktree
 * of `rev` in .bench-scratch/, removed after).
 */
const obsAgainst = process.argv.find((arg) => arg.startsWith("--obs-against="))?.slice("--obs-against=".length);
/** `--only=create,read`: just those scenarios, printed but not written to latest.md (which holds whole runs). */
const onlyArg = process.argv.find((arg) => arg.startsWith("--only="));
const only: ReadonlySet<Scenario> = new Set(
  onlyArg ? (onlyArg.slice("--only=".length).split(",") as Scenario[]) : SCENARIOS,
);
for (const name of only) {
  if (!SCENARIOS.includes(name)) throw new Error(`--only: unknown scenario ${name}; pick from ${SCENARIOS.join(", ")}`);
}
// Its rows are not the goals' variants: never in a whole run's latest.md.
if (obsAgainst !== undefined && !onlyArg) throw new Error("--obs-against needs --only (with obs)");

// Durations in whole seconds (autocannon counts whole seconds).
const P = quick
  ? {
    warmupS: 1,
    durationS: 2,
    warmEachRun: false,
    connections: 16,
    sseWrites: 15,
    sseWarmup: 3,
    sseRate: 10,
    sseDrainMs: 3000,
    coldProcesses: 3,
    rssSettleMs: 1000,
    deadlineMin: 6,
    edge: {
      delayMs: 20,
      s3Backend: edgeS3,
      burstMs: 5000,
      singles: 20,
      idleStreams: 50,
      idleMs: 10_000,
      receives: 20,
      manyThreads: 100,
      cpuReps: 50,
    },
  }
  : {
    warmupS: 2,
    durationS: 10,
    warmEachRun: true,
    connections: 16,
    sseWrites: 200,
    sseWarmup: 10,
    sseRate: 10,
    sseDrainMs: 10_000,
    coldProcesses: 5,
    rssSettleMs: 3000,
    deadlineMin: 30,
    // The idle window outlasts the sequencer's one-minute safety poll, so it is counted.
    edge: {
      delayMs: 20,
      s3Backend: edgeS3,
      burstMs: 15_000,
      singles: 50,
      idleStreams: 100,
      idleMs: 65_000,
      receives: 50,
      manyThreads: 100,
      cpuReps: 200,
    },
  };
/** Under the Durable Streams server's pool of 100 open stream files (past it, its appends start failing with 404s). */
const MANY_THREADS = 64;
/** Issue #23's second many-threads figure. */
const HUNDRED_THREADS = 100;
/** The create scenario's runs: name, threads, thread prefix. */
const CREATE_RUNS = [
  { name: "one", threads: 1, prefix: "create-one-" },
  { name: "many", threads: MANY_THREADS, prefix: "create-many-" },
  { name: "hundred", threads: HUNDRED_THREADS, prefix: "create-hundred-" },
] as const;
const READ_ARTIFACTS = 100;
const SSE_SUBSCRIBERS = [1, 100, 1000];
/** The cold threads: the same 1,000 artifacts at the end, histories of 4,000 patches in groups and of 10,000 commits. */
const COLD_THREADS: ColdThreadSpec[] = [
  { name: "1k-artifacts-3k-updates", updates: 3000, burst: 8 },
  { name: "10k-commits", updates: 9000, burst: 1 },
];
const IDLE_STREAMS = 1000;
const manyParams = {
  writes: P.sseWrites,
  warmupWrites: P.sseWarmup,
  ratePerS: P.sseRate,
  drainMs: P.sseDrainMs,
  settleMs: P.rssSettleMs,
};
const slowParams = { ...SLOW_PARAMS, settleMs: P.rssSettleMs };

const OURS = "src/runtime/node.ts";
/** The tenants scenario: A's write limit is the default (100/s); A floods at 10× it. */
const TENANTS: TenantsParams = {
  durationS: quick ? 5 : 20,
  limitPerS: 100,
  connections: 16,
  body: createBody(),
};
/** The webhooks scenario: latency at 50 writes/s with 1 and 20 webhooks, drain after an outage, the write path's cost. */
const WEBHOOKS: WebhooksParams = {
  ratePerS: 50,
  latencyS: quick ? 5 : 20,
  latencyWarmupS: quick ? 1 : 2,
  fanouts: [1, 20],
  outageS: quick ? 10 : 60,
  retryBasesMs: [null, 100],
  // Even: each order (forward, reversed) runs as often.
  rounds: quick ? 2 : 6,
  durationS: P.durationS,
  warmupS: P.warmupS,
  connections: P.connections,
  threads: MANY_THREADS,
  webhooks: 20,
};
const FLOOR = "bench/servers/floor.ts";
const DS = "bench/servers/durable-streams.ts";

const startedAt = new Date();
const loadAtStart = loadavg();
const t0 = performance.now();
const work = mkdtempSync(join(tmpdir(), "thread-artifacts-bench-"));
/**
 * The disk's speed at making a commit-like file (see bench/lib/fs-probe.ts): first, and
 * when measuring began (after waiting, up to DISK_WAIT_MS, for a disk slowed by a recent
 * mass deletion to recover; `--no-disk-wait` skips that).
 */
const diskAtStart = { first: fsProbe(work).microsPerFile, measured: Number.NaN, waitedS: 0 };
/**
 * Above this a new file costs twice a healthy one here (~40 µs): see fs-probe.ts. (It was
 * 150 µs until a full run began at 147: a disk still recovering, which our creates, one
 * file each, pay for and the floors, no files, do not.)
 */
const HEALTHY_FILE_MICROS = 80;
const DISK_WAIT_MS = 6 * 60_000;
const log = (message: string) => console.error(`[bench ${((performance.now() - t0) / 1000).toFixed(1)}s] ${message}`);

// The run stops by itself: a deadline (its own length, plus the longest disk wait), and
// Ctrl-C, end exactly the processes it started.
const deadline = setTimeout(() => {
  console.error(`bench: deadline of ${P.deadlineMin} min (+ the disk wait) passed; stopping`);
  cleanup();
  process.exit(2);
}, P.deadlineMin * 60_000 + DISK_WAIT_MS);
deadline.unref();
process.once("SIGINT", () => {
  cleanup();
  process.exit(130);
});
function cleanup() {
  killAllChildren();
  rmSync(work, { recursive: true, force: true });
}

/** Folders being deleted in the background; awaited before the run ends. */
const removing: Promise<void>[] = [];

const dir = (name: string) => {
  const path = join(work, name);
  mkdirSync(path, { recursive: true });
  return path;
};

/** Our server's env for a scenario: its own data folder; threads may grow past 1,000 during a create run. */
const oursEnv = (name: string, extra: Record<string, string> = {}) => ({
  DATA_DIR: dir(name),
  MAX_ARTIFACTS_PER_THREAD: "1000000",
  ...extra,
});

async function withServer<T>(
  name: string,
  entry: string,
  env: Record<string, string>,
  body: (server: ServerProcess) => Promise<T>,
): Promise<T> {
  const started = performance.now();
  const server = await startServer(name, entry, env);
  const up = performance.now();
  try {
    return await body(server);
  } finally {
    const stopping = performance.now();
    await server.stop();
    if (process.env.BENCH_DEBUG) {
      log(`${name}: start ${(up - started).toFixed(0)} ms, stop ${(performance.now() - stopping).toFixed(0)} ms`);
    }
  }
}

/**
 * Runs `body` with a worktree of `rev` checked out in .bench-scratch/ (inside the repo, so
 * its server finds this checkout's node_modules), removed after; without a rev, no worktree.
 */
async function withWorktreeOf<T>(
  rev: string | undefined,
  body: (against: { rev: string; entry: string } | undefined) => Promise<T>,
): Promise<T> {
  if (rev === undefined) return body(undefined);
  const path = join(".bench-scratch", `obs-against-${rev.replace(/[^\w.-]/g, "_")}`);
  execFileSync("git", ["worktree", "add", "--force", "--detach", path, rev], { stdio: "ignore" });
  try {
    return await body({ rev, entry: join(path, OURS) });
  } finally {
    execFileSync("git", ["worktree", "remove", "--force", path], { stdio: "ignore" });
  }
}

async function send(url: string, init: RequestInit & { expect?: number[] } = {}): Promise<Response> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  await response.arrayBuffer();
  if (init.expect && !init.expect.includes(response.status)) {
    throw new Error(`${init.method ?? "GET"} ${url}: HTTP ${response.status}`);
  }
  return response;
}

/** Runs `fn` over `items`, `concurrency` at a time. */
async function eachBounded<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) await fn(items[next++] as T);
  }));
}

/** One autocannon run against `server`: its warm-up, then the measured run with the server's CPU per response. */
async function measureHttp(http: LoadWorker, server: ServerProcess, run: HttpRun): Promise<HttpResult> {
  const timeout = 2 * (run.durationS + run.warmupS) * 1000 + 30_000;
  if (run.warmupS > 0) {
    await http.request<HttpResult>({ baseUrl: server.url, run, phase: "warmup" } satisfies HttpConfig, timeout);
  }
  const before = cpuMs(server.pid);
  const result = await http.request<HttpResult>(
    { baseUrl: server.url, run, phase: "measure" } satisfies HttpConfig,
    timeout,
  );
  const responses = result.ok + result.non2xx;
  return { ...result, cpuMsPerRequest: responses > 0 ? (cpuMs(server.pid) - before) / responses : Number.NaN };
}

async function measureAll(http: LoadWorker, server: ServerProcess, runs: HttpRun[]): Promise<HttpResult[]> {
  const results: HttpResult[] = [];
  for (const run of runs) results.push(await measureHttp(http, server, run));
  return results;
}

const dsJson = { "content-type": "application/json" };
async function dsCreateStreams(baseUrl: string, names: string[]): Promise<void> {
  await eachBounded(names, 16, async (name) => {
    await send(`${baseUrl}/v1/stream/${name}`, { method: "PUT", headers: dsJson, expect: [200, 201] });
  });
}

// ---------------------------------------------------------------- scenarios

type CreateServer = "ours" | "floor" | "durable floor" | "durable-streams";
interface CreateRow {
  threads: number;
  server: CreateServer;
  result: HttpResult;
  /** Ours: commit objects written per patch over the run (warm-up included), from the rollout folder. */
  commitsPerCreate?: number;
}

/** Commit objects and patches under the rollout's thread folders whose names start with `prefix`. */
function commitsAndPatches(rolloutDir: string, prefix: string): { commits: number; patches: number } {
  const threadsDir = join(rolloutDir, "tenants", "local", "threads");
  let commits = 0;
  let patches = 0;
  for (const thread of readdirSync(threadsDir).filter((name) => name.startsWith(prefix))) {
    const dir = join(threadsDir, thread, "commits");
    for (const name of readdirSync(dir)) {
      commits++;
      const commit = JSON.parse(readFileSync(join(dir, name), "utf8")) as { firstSeq: number; lastSeq: number };
      patches += commit.lastSeq - commit.firstSeq + 1;
    }
  }
  return { commits, patches };
}

async function benchCreate(http: LoadWorker): Promise<CreateRow[]> {
  const body = createBody();
  // Quick mode warms each server up once, before its first run.
  const runs = (path: string): HttpRun[] =>
    CREATE_RUNS.map((run, i) => ({
      name: run.name,
      method: "POST",
      path,
      threads: run.threads,
      threadPrefix: run.prefix,
      body,
      connections: P.connections,
      durationS: P.durationS,
      warmupS: i === 0 || P.warmEachRun ? P.warmupS : 0,
    }));
  const rows: CreateRow[] = [];
  const collect = (server: CreateServer, results: HttpResult[]) => {
    for (const result of results) {
      const run = CREATE_RUNS.find((r) => r.name === result.name);
      if (run) rows.push({ threads: run.threads, server, result });
    }
  };
  log("create: ours");
  const oursCreate = oursEnv("create-ours");
  await withServer("ours", OURS, oursCreate, async (s) => {
    collect("ours", await measureAll(http, s, runs("/v1/threads/{thread}/artifacts")));
  });
  for (const row of rows) {
    const { commits, patches } = commitsAndPatches(
      join(oursCreate.DATA_DIR, "rollouts"),
      CREATE_RUNS.find((r) => r.threads === row.threads)?.prefix ?? "create-one-",
    );
    row.commitsPerCreate = commits / patches;
  }
  log("create: floor");
  await withServer("floor", FLOOR, { FLOOR_DB: join(dir("create-floor"), "floor.db") }, async (s) => {
    collect("floor", await measureAll(http, s, runs("/floor/threads/{thread}/artifacts")));
  });
  log("create: durable floor");
  await withServer("durable floor", FLOOR, { FLOOR_DB: join(dir("create-floor-durable"), "floor.db") }, async (s) => {
    collect("durable floor", await measureAll(http, s, runs("/floor-durable/threads/{thread}/artifacts")));
  });
  log("create: durable streams");
  await withServer("durable-streams", DS, { DS_DATA_DIR: dir("create-ds") }, async (s) => {
    await dsCreateStreams(
      s.url,
      CREATE_RUNS.flatMap((run) => Array.from({ length: run.threads }, (_, i) => `${run.prefix}${i}`)),
    );
    collect("durable-streams", await measureAll(http, s, runs("/v1/stream/{thread}")));
  });
  return rows;
}

interface ReadRow {
  variant: "strong" | "cache" | "floor";
  result: HttpResult;
}

async function benchRead(http: LoadWorker): Promise<ReadRow[]> {
  const run = (name: string, path: string): HttpRun => ({
    name,
    method: "GET",
    path,
    connections: P.connections,
    durationS: P.durationS,
    warmupS: P.warmupS,
  });
  const dataDir = dir("read-ours");
  const rows: ReadRow[] = [];
  log("read: ours (strong, cache)");
  await withServer("ours", OURS, { DATA_DIR: dataDir }, async (s) => {
    const indexes = Array.from({ length: READ_ARTIFACTS }, (_, i) => i);
    await eachBounded(indexes, 4, async (i) => {
      await send(`${s.url}/v1/threads/read-100/artifacts`, {
        method: "POST",
        headers: dsJson,
        body: createBody(i),
        expect: [201],
      });
    });
    const results = await measureAll(http, s, [
      run("strong", "/v1/threads/read-100?consistency=strong"),
      { ...run("cache", "/v1/threads/read-100?consistency=cache"), warmupS: P.warmEachRun ? P.warmupS : 0 },
    ]);
    for (const result of results) rows.push({ variant: result.name as "strong" | "cache", result });
  });
  // The floor reads the very same rows: a copy of the cache file our server just wrote.
  const floorDb = join(dir("read-floor"), "floor.db");
  for (const suffix of ["", "-wal"]) {
    if (existsSync(join(dataDir, `artifacts.db${suffix}`))) {
      copyFileSync(join(dataDir, `artifacts.db${suffix}`), `${floorDb}${suffix}`);
    }
  }
  log("read: floor");
  await withServer("floor", FLOOR, { FLOOR_DB: floorDb }, async (s) => {
    rows.push({ variant: "floor", result: await measureHttp(http, s, run("floor", "/floor/threads/read-100")) });
  });
  return rows;
}

interface SseRow {
  server: "ours" | "floor" | "durable-streams";
  result: SseResult;
}

async function benchSse(sse: LoadWorker): Promise<SseRow[]> {
  const rows: SseRow[] = [];
  const timeout = ((P.sseWrites + P.sseWarmup) / P.sseRate) * 1000 + 90_000;
  const drainMs = P.sseDrainMs;
  const contenders: Array<
    {
      server: SseRow["server"];
      entry: string;
      env: Record<string, string>;
      urls: (base: string, thread: string) => { streamUrl: string; writeUrl: string };
    }
  > = [
    {
      server: "ours",
      entry: OURS,
      env: { DATA_DIR: dir("sse-ours") },
      urls: (base, thread) => ({
        streamUrl: `${base}/v1/threads/${thread}/events`,
        writeUrl: `${base}/v1/threads/${thread}/artifacts`,
      }),
    },
    {
      server: "floor",
      entry: FLOOR,
      env: { FLOOR_DB: join(dir("sse-floor"), "floor.db") },
      urls: (base, thread) => ({
        streamUrl: `${base}/floor/threads/${thread}/events`,
        writeUrl: `${base}/floor/threads/${thread}/artifacts`,
      }),
    },
    {
      server: "durable-streams",
      entry: DS,
      env: { DS_DATA_DIR: dir("sse-ds") },
      urls: (base, thread) => ({
        streamUrl: `${base}/v1/stream/${thread}?offset=-1&live=sse`,
        writeUrl: `${base}/v1/stream/${thread}`,
      }),
    },
  ];
  for (const contender of contenders) {
    await withServer(contender.server, contender.entry, contender.env, async (s) => {
      for (const subscribers of SSE_SUBSCRIBERS) {
        log(`sse: ${contender.server}, ${subscribers} subscriber(s)`);
        const thread = `sse-${subscribers}`;
        if (contender.server === "durable-streams") await dsCreateStreams(s.url, [thread]);
        const { streamUrl, writeUrl } = contender.urls(s.url, thread);
        const result = await sse.request<SseResult>(
          {
            streamUrls: new Array<string>(subscribers).fill(streamUrl),
            writeUrls: [writeUrl],
            perWrite: subscribers,
            writes: P.sseWrites,
            warmupWrites: P.sseWarmup,
            ratePerS: P.sseRate,
            drainMs,
          },
          timeout,
        );
        rows.push({ server: contender.server, result });
      }
    });
  }
  return rows;
}

interface ColdRow {
  thread: ColdThread;
  name: string;
  compaction: boolean;
  samples: ProbeResult[];
  p50: number;
}

async function benchCold(probe: LoadWorker): Promise<ColdRow[]> {
  log("cold: preparing rollouts in-process");
  const dataDir = dir("cold");
  const { threads, compactionFiles } = await prepareColdRollouts(COLD_THREADS, join(dataDir, "rollouts"));
  const rows: ColdRow[] = [];
  const deadPort = await closedPort();
  // The same commits twice: first with their compaction objects, then with those deleted.
  for (const compaction of [true, false]) {
    if (!compaction) { for (const file of compactionFiles) unlinkSync(file); }
    for (const spec of COLD_THREADS) {
      const thread = threads.get(spec.name) as ColdThread;
      log(`cold: ${spec.name}, compaction ${compaction ? "on" : "deleted"}`);
      const samples: ProbeResult[] = [];
      for (let i = 0; i < P.coldProcesses; i++) {
        const env = { DATA_DIR: dataDir, LIBSQL_URL: `http://127.0.0.1:${deadPort}` };
        const sample = await withServer(
          "ours (libSQL down)",
          OURS,
          env,
          (s) => probe.request<ProbeResult>({ url: `${s.url}/v1/threads/${thread.threadId}` }, 90_000),
        );
        if (sample.status !== 200 || sample.source !== "rollout") {
          throw new Error(`cold read: HTTP ${sample.status}, source ${sample.source}`);
        }
        samples.push(sample);
      }
      rows.push({ thread, name: spec.name, compaction, samples, p50: percentile(samples.map((s) => s.ms), 50) });
    }
  }
  // Thousands of files: delete them while the memory scenario runs (it does no disk I/O to speak of).
  removing.push(rm(dataDir, { recursive: true, force: true }));
  return rows;
}

interface RssRow {
  server: string;
  streams: number;
  baseline: number;
  withStreams: number;
  open: number;
  ended: number;
}

async function benchRss(idle: LoadWorker): Promise<RssRow[]> {
  const rows: RssRow[] = [];
  const cases: Array<
    {
      server: string;
      entry: string;
      env: Record<string, string>;
      warm: (base: string) => Promise<void>;
      streamUrl: (base: string) => string;
    }
  > = [
    {
      server: "ours (1 thread)",
      entry: OURS,
      env: { DATA_DIR: dir("rss-ours") },
      warm: async (base) =>
        void (await send(`${base}/v1/threads/rss-0/artifacts`, {
          method: "POST",
          headers: dsJson,
          body: createBody(),
          expect: [201],
        })),
      streamUrl: (base) => `${base}/v1/threads/rss-0/events?since=1`,
    },
    // One stream per thread: 1,000 feeds, each polling the log every SSE_POLL_MS (full run only).
    {
      server: "ours (1,000 threads)",
      entry: OURS,
      env: { DATA_DIR: dir("rss-ours-many") },
      warm: async (base) =>
        void (await send(`${base}/v1/threads/rss-warm/artifacts`, {
          method: "POST",
          headers: dsJson,
          body: createBody(),
          expect: [201],
        })),
      streamUrl: (base) => `${base}/v1/threads/rss-{i}/events`,
    },
    {
      server: "SSE floor",
      entry: FLOOR,
      env: { FLOOR_DB: join(dir("rss-floor"), "floor.db") },
      warm: async (base) =>
        void (await send(`${base}/floor/threads/rss-0/artifacts`, {
          method: "POST",
          headers: dsJson,
          body: createBody(),
          expect: [201],
        })),
      streamUrl: (base) => `${base}/floor/threads/rss-0/events`,
    },
    {
      server: "Durable Streams",
      entry: DS,
      env: { DS_DATA_DIR: dir("rss-ds") },
      warm: async (base) => {
        await dsCreateStreams(base, ["rss-0"]);
        await send(`${base}/v1/stream/rss-0`, {
          method: "POST",
          headers: dsJson,
          body: createBody(),
          expect: [200, 204],
        });
      },
      streamUrl: (base) => `${base}/v1/stream/rss-0?offset=now&live=sse`,
    },
  ];
  for (const c of cases) {
    if (quick && c.server === "ours (1,000 threads)") continue;
    log(`rss: ${c.server}`);
    await withServer(c.server, c.entry, c.env, async (s) => {
      await c.warm(s.url);
      await sleep(300);
      const baseline = rssBytes(s.pid);
      const opened = await idle.request<{ open: number }>(
        { op: "open", url: c.streamUrl(s.url), count: IDLE_STREAMS },
        90_000,
      );
      await sleep(P.rssSettleMs);
      const withStreams = rssBytes(s.pid);
      const closed = await idle.request<{ open: number; ended: number }>({ op: "close" }, 30_000);
      rows.push({
        server: c.server,
        streams: opened.open,
        baseline,
        withStreams,
        open: opened.open,
        ended: closed.ended,
      });
    });
  }
  return rows;
}

// ---------------------------------------------------------------- report

const MiB = 1024 * 1024;
const f = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "–");
const fx = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}×` : "–");
const mark = (ok: boolean) => (ok ? "✅" : "❌");

interface Goal {
  goal: string;
  measured: string;
  met: boolean;
}

function report(
  create: CreateRow[],
  read: ReadRow[],
  sse: SseRow[],
  many: ManyResult | null,
  cold: ColdRow[],
  rss: RssRow[],
  slow: SlowRow[],
  obs: ObsRow[],
  edge: EdgeResult[],
  edgeCosts: EdgeCosts | null,
  tenants: TenantsRow[],
  webhooks: WebhooksRows | null,
  seconds: number,
) {
  const goals: Goal[] = [];
  const lines: string[] = [];
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  lines.push(`# thread-artifacts benchmarks (${quick ? "quick" : "full"} run)`, "");
  lines.push(
    `${startedAt.toISOString()} · ${cpus().length} cores, ${cpu} · Node ${process.version} · ${process.platform}/${process.arch} · run took ${
      seconds.toFixed(0)
    } s · ` +
      `load average ${loadAtStart.map((n) => n.toFixed(1)).join("/")} at start, ${
        loadavg().map((n) => n.toFixed(1)).join("/")
      } at end (1/5/15 min; anything well above the bench's own ~2 means other work shared the cores) · ` +
      `a commit-like file (1 KiB created, linked, first name removed) took ${
        diskAtStart.measured.toFixed(0)
      } µs when measuring began (${diskAtStart.first.toFixed(0)} µs at first, ${diskAtStart.waitedS} s waited; ` +
      `healthy here: ~40 µs; several times that for minutes after a mass deletion: see bench/lib/fs-probe.ts)`,
    "",
  );
  lines.push(
    "Everything on 127.0.0.1, one server at a time, load in separate processes (autocannon for request/response). " +
      `Ours: \`src/runtime/node.ts\` with the fs rollout and a libSQL file (WAL, synchronous=NORMAL) in a temp folder on the same disk as the floors. ` +
      "Floor: `bench/servers/floor.ts` (bare Hono on @hono/node-server, same libSQL settings). Durable Streams: `@durable-streams/server`, file-backed.",
    "",
  );

  // create
  const warm = P.warmEachRun ? `after ${P.warmupS} s warm-up each` : `after one ${P.warmupS} s warm-up per server`;
  lines.push(
    `## create-artifact (POST ~1 KiB JSON, ${P.connections} connections, ${P.durationS} s per run ${warm})`,
    "",
  );
  lines.push(
    "Floor: parse + one libSQL INSERT (no fsync: WAL with synchronous=NORMAL commits without one). " +
      "Durable floor (not a goal, for the cause): the same after writing the body put-if-absent through our own `FsBlobStore` (temp file fsync, link, folder fsync), with no per-thread ordering. " +
      `The ${MANY_THREADS}- and ${HUNDRED_THREADS}-thread runs spread requests round-robin over their threads (streams).`,
    "",
  );
  lines.push(
    "| threads | server | req/s | p50 ms | p99 ms | non-2xx | server CPU ms/req | commit objects per create | vs floor | vs Durable Streams |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const threads of CREATE_RUNS.map((run) => run.threads)) {
    const rowOf = (server: CreateServer) => create.find((r) => r.threads === threads && r.server === server);
    const of = (server: CreateServer) => rowOf(server)?.result;
    const floor = of("floor");
    const ds = of("durable-streams");
    for (const server of ["ours", "floor", "durable floor", "durable-streams"] as const) {
      const r = of(server);
      if (!r) continue;
      lines.push(
        `| ${threads === 1 ? "one thread" : `${threads} threads`} | ${server} | ${f(r.rps, 0)} | ${f(r.p50, 2)} | ${
          f(r.p99, 2)
        } | ${r.non2xx + r.errors} | ${f(r.cpuMsPerRequest ?? Number.NaN, 2)} | ${
          server === "ours" ? f(rowOf("ours")?.commitsPerCreate ?? Number.NaN, 3) : "–"
        } | ${floor ? fx(r.rps / floor.rps) : "–"} | ${ds ? fx(r.rps / ds.rps) : "–"} |`,
      );
    }
    const ours = of("ours");
    const oursRow = rowOf("ours");
    if (threads === 1 && oursRow?.commitsPerCreate !== undefined) {
      goals.push({
        goal: "commit objects per create, one thread, 16 connections ≤ 1/4",
        measured: f(oursRow.commitsPerCreate, 3),
        met: oursRow.commitsPerCreate <= 0.25,
      });
    }
    if (ours && floor) {
      goals.push({
        goal: `create (${threads === 1 ? "one thread" : `${threads} threads`}) ≥ 0.6× floor`,
        measured: fx(ours.rps / floor.rps),
        met: ours.rps >= 0.6 * floor.rps,
      });
    }
    if (ours && ds) {
      goals.push({
        goal: `create (${threads === 1 ? "one thread" : `${threads} threads`}) ≥ 1.5× Durable Streams`,
        measured: fx(ours.rps / ds.rps),
        met: ours.rps >= 1.5 * ds.rps,
      });
    }
    // Issue #23's bars: many threads ≥ 1.2× Durable Streams and ≥ 0.7× the no-fsync floor; one thread ≥ 3×; CPU ≤ 1.0 ms.
    if (ours && ds && floor) {
      const many = threads > 1;
      goals.push({
        goal: `issue #23: create (${many ? `${threads} threads` : "one thread"}) ≥ ${
          many ? "1.2" : "3"
        }× Durable Streams${many ? " and ≥ 0.7× floor" : ""}`,
        measured: `${fx(ours.rps / ds.rps)} Durable Streams, ${fx(ours.rps / floor.rps)} floor`,
        met: many ? ours.rps >= 1.2 * ds.rps && ours.rps >= 0.7 * floor.rps : ours.rps >= 3 * ds.rps,
      });
      if (many && ours.cpuMsPerRequest !== undefined) {
        goals.push({
          goal: `issue #23: server CPU per create (${threads} threads) ≤ 1.0 ms`,
          measured: `${f(ours.cpuMsPerRequest, 2)} ms`,
          met: ours.cpuMsPerRequest <= 1.0,
        });
      }
    }
  }
  lines.push("");

  // read
  lines.push(
    `## read-thread (${READ_ARTIFACTS} artifacts × ~1 KiB, ${P.connections} connections, ${P.durationS} s per run ${warm})`,
    "",
  );
  lines.push(
    "| variant | req/s | p50 ms | p99 ms | non-2xx | server CPU ms/req | vs floor |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  const floorRead = read.find((r) => r.variant === "floor")?.result;
  for (const row of read) {
    const r = row.result;
    const label = row.variant === "floor" ? "floor (same SELECTs, string concat)" : `ours, consistency=${row.variant}`;
    lines.push(
      `| ${label} | ${f(r.rps, 0)} | ${f(r.p50, 2)} | ${f(r.p99, 2)} | ${r.non2xx + r.errors} | ${
        f(r.cpuMsPerRequest ?? Number.NaN, 2)
      } | ${floorRead ? fx(r.rps / floorRead.rps) : "–"} |`,
    );
  }
  const strong = read.find((r) => r.variant === "strong")?.result;
  if (strong && floorRead) {
    goals.push({
      goal: "read-thread strong ≥ 0.8× floor",
      measured: fx(strong.rps / floorRead.rps),
      met: strong.rps >= 0.8 * floorRead.rps,
    });
  }
  lines.push("");

  // sse
  lines.push(
    `## SSE write-to-receive latency (one thread, ${P.sseWrites} writes of ~1 KiB at ${P.sseRate}/s after ${P.sseWarmup} warm-up writes)`,
    "",
    "Latency = monotonic receive time of the event's chunk − send time of its POST, both in the load process; every (subscriber, write) pair is a sample, " +
      `and one not delivered within ${
        P.sseDrainMs / 1000
      } s of the last send counts as slower than all (\`lost\` where a percentile lands on one).`,
    "",
  );
  lines.push(
    "| subscribers | server | p50 ms | p99 ms | max ms | delivered | POST p50 ms | p99 vs SSE floor | p99 vs Durable Streams |",
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  // A latency over a lost event (null) is slower than any measured one.
  const ms = (n: number | null) => (n === null ? Number.POSITIVE_INFINITY : n);
  const lat = (n: number | null, digits: number) => (n === null ? "lost" : f(n, digits));
  const ratio = (a: number | null, b: number | null) => (a === null && b === null ? "–" : fx(ms(a) / ms(b)));
  for (const n of SSE_SUBSCRIBERS) {
    const of = (server: SseRow["server"]) => sse.find((r) => r.server === server && r.result.subscribers === n)?.result;
    const floor = of("floor");
    const ds = of("durable-streams");
    for (const server of ["ours", "floor", "durable-streams"] as const) {
      const r = of(server);
      if (!r) continue;
      const name = server === "floor" ? "SSE floor" : server;
      lines.push(
        `| ${n} | ${name} | ${lat(r.p50, 2)} | ${lat(r.p99, 2)} | ${lat(r.max, 1)} | ${r.delivered}/${r.expected}${
          r.writeErrors ? ` (${r.writeErrors} POSTs failed or unanswered)` : ""
        } | ${f(r.writeP50, 2)} | ${floor ? ratio(r.p99, floor.p99) : "–"} | ${ds ? ratio(r.p99, ds.p99) : "–"} |`,
      );
    }
    const ours = of("ours");
    if (n === 1000 && ours && floor) {
      goals.push({
        goal: "SSE p99 at 1,000 subscribers ≤ 1.5× SSE floor",
        measured: `${lat(ours.p99, 2)} ms vs ${lat(floor.p99, 2)} ms (${ratio(ours.p99, floor.p99)})`,
        met: ms(ours.p99) <= 1.5 * ms(floor.p99),
      });
    }
    if (n === 1000 && ours && ds) {
      goals.push({
        goal: "SSE p99 at 1,000 subscribers < Durable Streams",
        measured: `${lat(ours.p99, 2)} ms vs ${lat(ds.p99, 2)} ms`,
        met: ms(ours.p99) < ms(ds.p99),
      });
    }
  }
  lines.push("");

  // many threads on one stream
  if (many) {
    const section = reportMany(many, manyParams);
    lines.push(...section.lines);
    goals.push(...section.goals);
  }

  // cold
  lines.push(
    `## cold read, libSQL down (fresh server process per sample, first GET; ${P.coldProcesses} processes each)`,
    "",
    "Two threads that end with the same 1,000 artifacts of ~1 KiB, written once through the service in-process (compaction on, COMPACT_EVERY 64): " +
      "1,000 creates then 3,000 updates sent 8 at a time (groups of ~8), and 1,000 creates then 9,000 updates one at a time (10,000 commits). " +
      "Read first with the compaction objects, then with them deleted (a replay of every commit). " +
      "LIBSQL_URL points at a closed loopback port; the answer comes from the rollout (`X-Artifacts-Source: rollout`).",
    "",
  );
  lines.push(
    "| thread | patches | commits | commit MB | rollout MB | rollout ÷ commits | compaction | p50 ms | samples ms |",
    "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
  );
  for (const row of cold) {
    const t = row.thread;
    lines.push(
      `| ${row.name} | ${t.patches.toLocaleString("en-US")} | ${t.commits.toLocaleString("en-US")} | ${
        f(t.commitBytes / MiB, 2)
      } | ${f(t.rolloutBytes / MiB, 2)} | ${fx(t.rolloutBytes / t.commitBytes)} | ${
        row.compaction ? "on" : "deleted"
      } | ${f(row.p50, 1)} | ${row.samples.map((s) => f(s.ms, 0)).join(", ")} |`,
    );
  }
  const grouped = cold.find((r) => r.compaction && r.name === "1k-artifacts-3k-updates");
  const long = cold.find((r) => r.compaction && r.name === "10k-commits");
  if (grouped) {
    goals.push({
      goal: "rollout bytes ÷ commit bytes, 1,000 artifacts × 3,000 updates ≤ 3",
      measured: fx(grouped.thread.rolloutBytes / grouped.thread.commitBytes),
      met: grouped.thread.rolloutBytes <= 3 * grouped.thread.commitBytes,
    });
  }
  if (grouped && long) {
    goals.push({
      goal: "cold read, cache down: 10,000-commit thread within 1.5× of the 1,000 × 3,000 one",
      measured: `${f(long.p50, 1)} ms vs ${f(grouped.p50, 1)} ms (${fx(long.p50 / grouped.p50)})`,
      met: long.p50 <= 1.5 * grouped.p50 && grouped.p50 <= 1.5 * long.p50,
    });
  }
  lines.push("");

  // rss
  lines.push(
    `## resident memory with ${IDLE_STREAMS.toLocaleString("en-US")} idle SSE streams (VmRSS of the server process, ${
      P.rssSettleMs / 1000
    } s after the last opened)`,
    "",
  );
  lines.push(
    "| server | baseline MiB | with streams MiB | delta MiB | per stream KiB |",
    "| --- | ---: | ---: | ---: | ---: |",
  );
  for (const row of rss) {
    const delta = row.withStreams - row.baseline;
    lines.push(
      `| ${row.server} | ${f(row.baseline / MiB)} | ${f(row.withStreams / MiB)} | ${f(delta / MiB)} | ${
        f(delta / 1024 / Math.max(1, row.open), 1)
      } |`,
    );
  }
  const oursRss = rss.find((r) => r.server === "ours (1 thread)");
  if (oursRss) {
    goals.push({
      goal: "RSS delta with 1,000 idle streams ≤ 100 MiB",
      measured: `${f((oursRss.withStreams - oursRss.baseline) / MiB)} MiB`,
      met: oursRss.withStreams - oursRss.baseline <= 100 * MiB && oursRss.open === IDLE_STREAMS,
    });
  }
  lines.push("");

  // slow stream readers
  if (slow.length > 0) {
    const section = reportSlow(slow, slowParams);
    lines.push(...section.lines);
    goals.push(...section.goals);
  }

  // obs
  if (obs.length > 0) {
    const pinned = obs[0]?.pinned ?? false;
    lines.push(
      `## what operating it costs a write (create, ${MANY_THREADS} threads, ${P.connections} connections)`,
      "",
      "The variants' servers run at once and the load moves between them in blocks of a few seconds, in a fresh random order each block, so drift in the machine and the disk lands on every variant alike; the servers are started anew each generation, so one process's luck averages out. The OTLP exporter sends to a sink in the bench process. " +
        (pinned
          ? "The servers run on CPU 0 (a server under load is CPU-bound there), the load generator, the bench and the sink on the others. "
          : "Unpinned: the servers share their CPUs with the load generator, so blocks spread widely. ") +
        "\"paired\" is the geometric mean over every block of the variant's req/s over its neighbour's in the same block " +
        (obsAgainst === undefined
          ? "(defaults over everything off, each OTLP variant over the defaults): the figure the goals judge; "
          : `(each over the defaults; "vs everything off" is vs the defaults here): every span at ${obsAgainst} against this checkout, judging no goal; `) +
        '"per generation" is the same for each set of processes; ' +
        "\"CPU per create, paired\" is the same mean of the variant's server CPU per create over its neighbour's (above 1: what it adds).",
      "",
      "| variant | req/s (median block) | server CPU ms/req | vs everything off | paired | per generation | CPU per create, paired |",
      "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    );
    const [off] = obs;
    for (const row of obs) {
      lines.push(
        `| ${row.variant} | ${f(row.median, 0)} | ${f(row.cpuMs, 2)} | ${off ? fx(row.median / off.median) : "–"} | ${
          row.pairedRatio === undefined ? "–" : fx(row.pairedRatio)
        } | ${row.generationRatios?.map((r) => fx(r)).join(", ") ?? "–"} | ${
          row.cpuRatio === undefined ? "–" : fx(row.cpuRatio)
        } |`,
      );
    }
    lines.push("");
    // Against another rev the rows are not the goals' variants.
    const [, defaults, everySpan, sampled] = obsAgainst === undefined ? obs : [];
    const judge = (goal: string, row: ObsRow | undefined) => {
      if (row?.pairedRatio === undefined) return;
      goals.push({ goal, measured: fx(row.pairedRatio), met: row.pairedRatio >= 0.95 });
    };
    judge("metrics and logs at their defaults cost ≤ 5% of create throughput", defaults);
    judge("the OTLP exporter (every span) costs ≤ 5% of create throughput", everySpan);
    judge("the OTLP exporter (10% of traces) costs ≤ 5% of create throughput", sampled);
  }

  // edge
  if (edge.length > 0) {
    lines.push(
      `## edge: the Worker in workerd, S3 and libSQL over HTTP each ${P.edge.delayMs} ms away (every request delayed by a counting proxy)`,
      "",
      P.edge.s3Backend === "memory"
        ? "The test S3 server checks SigV4 and `If-None-Match: *` and keeps its objects in memory (bench/load/stores.ts; `--edge-s3=s3rver` puts s3rver behind it, which adds ~5 ms to every put). The Hrana server keeps the cache in a SQLite file."
        : "The test S3 server is s3rver behind the SigV4 proxy (`--edge-s3=s3rver`; its files in memory where the machine has /dev/shm). The Hrana server keeps the cache in a SQLite file.",
      "",
      "Before: the Worker without the `SEQUENCER` binding (each request writes on its own, streams poll every second). " +
        "After: with the thread's Durable Object sequencer. Store requests include compaction's. " +
        "Commit puts are the PUTs of keys under `commits/`, timed at the distance proxy: the gap runs from one's answer " +
        "to the next one's arrival (negative when they overlap, as writers without the sequencer race).",
      "",
      "| variant | creates/s (1 thread, 16 writers) | p50 ms | p99 ms | S3 PUT p50 / p99 ms | creates per commit put | gap between commit puts p50 ms | non-2xx | S3 req/create | libSQL req/create | single create p50 ms | idle store req/s per stream | write-to-receive p50 ms | create p50 ms (same loop) |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const r of edge) {
      const w = r.writers;
      lines.push(
        `| ${r.variant} | ${f(w.perSecond, 1)} | ${f(w.p50, 1)} | ${f(w.p99, 1)} | ${f(w.putP50, 1)} / ${
          f(w.putP99, 1)
        } | ${f(w.createsPerCommitPut, 1)} | ${f(w.commitPutGapP50, 1)} | ${w.non2xx} | ${f(w.s3PerCreate, 2)} | ${
          f(w.libsqlPerCreate, 2)
        } | ${f(r.single.p50, 1)} | ${f(r.idle.storeRequestsPerStreamPerSecond, 3)} | ${f(r.receive.p50, 1)} | ${
          f(r.receive.createP50, 1)
        } |`,
      );
    }
    lines.push("");
    lines.push(...edgeLimitsReport(edge));
    lines.push(...edgeCostsReport(edgeCosts));
    const before = edge.find((r) => r.variant.startsWith("before"));
    const after = edge.find((r) => r.variant.startsWith("after"));
    if (after) {
      const w = after.writers;
      goals.push({
        goal: "edge: one thread, 16 writers ≥ 300 creates/s (issue #23; ≥ 12× without the sequencer)",
        measured: `${f(w.perSecond, 1)}/s${before ? ` (${fx(w.perSecond / before.writers.perSecond)})` : ""}`,
        met: w.perSecond >= 300 && (!before || w.perSecond >= 12 * before.writers.perSecond),
      });
      goals.push({
        goal: "edge: 16 writers p99 ≤ 150 ms, every create 2xx",
        measured: `${f(w.p99, 1)} ms, ${w.non2xx} non-2xx`,
        met: w.p99 <= 150 && w.non2xx === 0,
      });
      goals.push({
        goal: "edge: ≤ 0.3 S3 and ≤ 0.13 libSQL requests per create (no more than before issue #23)",
        measured: `${f(w.s3PerCreate, 2)} S3, ${f(w.libsqlPerCreate, 2)} libSQL`,
        met: w.s3PerCreate <= 0.3 && w.libsqlPerCreate <= 0.13,
      });
      goals.push({
        goal: "edge: single create p50 ≤ 80 ms",
        measured: `${f(after.single.p50, 1)} ms`,
        met: after.single.p50 <= 80,
      });
      goals.push({
        goal: "edge: idle streams ≤ 0.05 store requests/s each",
        measured: f(after.idle.storeRequestsPerStreamPerSecond, 3),
        met: after.idle.storeRequestsPerStreamPerSecond <= 0.05,
      });
      goals.push({
        goal: "edge: write-to-receive p50 ≤ 1.1× a create's p50",
        measured: `${f(after.receive.p50, 1)} ms vs ${f(after.receive.createP50, 1)} ms (${
          fx(after.receive.p50 / after.receive.createP50)
        })`,
        met: after.receive.p50 <= 1.1 * after.receive.createP50,
      });
    }
  }

  if (edgeCosts) {
    const single = edgeCosts.rows.filter((r) => r.scope === "single");
    const worst = single.reduce((max, r) => Math.max(max, r.total), 0);
    goals.push({
      goal: "edge: every single-thread operation ≤ 5 subrequests of the Worker's request",
      measured: `at most ${worst} (${single.length} operations)`,
      met: single.length > 0 && worst <= 5,
    });
    const many = edgeCosts.rows.find((r) => r.scope === "many" && r.operation.startsWith("stream"));
    if (many) {
      goals.push({
        goal: `edge: a stream of ${edgeCosts.manyThreads} threads catches up in one libSQL query`,
        measured: `${many.subrequests.libSQL ?? 0} libSQL, ${
          many.subrequests.S3 ?? 0
        } S3, ${many.total} subrequests in all`,
        met: many.subrequests.libSQL === 1 && (many.subrequests.S3 ?? 0) === 0,
      });
    }
  }

  if (tenants.length > 0) {
    const section = tenantsReport(tenants, TENANTS);
    lines.push(...section.lines);
    goals.push(...section.goals);
  }

  if (webhooks) {
    const section = webhooksReport(webhooks, WEBHOOKS);
    lines.push(...section.lines);
    goals.push(...section.goals);
  }

  lines.push("## goals", "", "| goal | measured | met |", "| --- | --- | :---: |");
  for (const g of goals) lines.push(`| ${g.goal} | ${g.measured} | ${mark(g.met)} |`);
  lines.push("");
  return lines.join("\n");
}

// ---------------------------------------------------------------- main

/** Waits (bounded) until a new file costs what it does on a healthy disk, re-probing every 30 s. */
async function waitForHealthyDisk(): Promise<void> {
  let micros = diskAtStart.first;
  const started = performance.now();
  while (micros > HEALTHY_FILE_MICROS && !process.argv.includes("--no-disk-wait")) {
    if (performance.now() - started > DISK_WAIT_MS) {
      log(`disk: still ${micros.toFixed(0)} µs per new file after ${DISK_WAIT_MS / 60_000} min; measuring anyway`);
      break;
    }
    log(`disk: a new file costs ${micros.toFixed(0)} µs (healthy: ~40); waiting for it to recover`);
    await new Promise((resolve) => setTimeout(resolve, 30_000));
    micros = fsProbe(work).microsPerFile;
  }
  diskAtStart.measured = micros;
  diskAtStart.waitedS = Math.round((performance.now() - started) / 1000);
}

async function main() {
  log(`${quick ? "quick" : "full"} run; work folder ${work}`);
  await waitForHealthyDisk();
  const http = startLoadWorker(join(ROOT, "bench/load/http.ts"));
  const sseWorker = startLoadWorker(join(ROOT, "bench/load/sse.ts"));
  const probe = startLoadWorker(join(ROOT, "bench/load/probe.ts"));
  const idle = startLoadWorker(join(ROOT, "bench/load/idle.ts"));
  try {
    const create = only.has("create") ? await benchCreate(http) : [];
    const read = only.has("read") ? await benchRead(http) : [];
    const sse = only.has("sse") ? await benchSse(sseWorker) : [];
    const many = only.has("many")
      ? await benchMany(manyParams, {
        sse: sseWorker,
        idle,
        withOurs: (name, body) => withServer(`ours (${name})`, OURS, oursEnv(name), body),
        log,
      })
      : null;
    const cold = only.has("cold") ? await benchCold(probe) : [];
    const rss = only.has("rss") ? await benchRss(idle) : [];
    const slow = only.has("slow")
      ? await benchSlowReaders(slowParams, {
        withOurs: (name, env, body) => withServer(`ours (${name})`, OURS, oursEnv(name, env), body),
        log,
      })
      : [];
    const obs = only.has("obs")
      ? await withWorktreeOf(obsAgainst, (against) =>
        benchObservability(
          {
            generations: quick ? 1 : 5,
            blocks: quick ? 2 : 6,
            blockS: quick ? 1 : 2,
            // Each new server's first seconds are its JIT's: the variants with more code warm up longer.
            warmupS: quick ? 1 : 5,
            connections: P.connections,
            threads: MANY_THREADS,
            body: createBody(),
            ...(against ? { against } : {}),
          },
          {
            withOurs: (name, env, body, entry = OURS) => withServer(`ours (${name})`, entry, oursEnv(name, env), body),
            measure: (server, run) => measureHttp(http, server, run),
            log,
            loadPid: http.pid,
          },
        ))
      : [];
    const { variants: edge, costs: edgeCosts } = only.has("edge")
      ? await benchEdge(P.edge, log)
      : { variants: [], costs: null };
    const tenants = only.has("tenants")
      ? await benchTenants(TENANTS, {
        withOurs: (name, env, body) => withServer(`ours (${name})`, OURS, oursEnv(name, env), body),
        flood: (server, run) => measureHttp(http, server, run),
        log,
      })
      : [];
    const webhooks = only.has("webhooks")
      ? await benchWebhooks(WEBHOOKS, {
        withOurs: (name, env, body) => withServer(`ours (${name})`, OURS, oursEnv(name, env), body),
        measure: (server, run) => measureHttp(http, server, run),
        log,
      })
      : null;
    await Promise.all(removing);
    const seconds = (performance.now() - t0) / 1000;
    const markdown = report(create, read, sse, many, cold, rss, slow, obs, edge, edgeCosts, tenants, webhooks, seconds);
    const results = join(ROOT, "bench/results");
    mkdirSync(results, { recursive: true });
    if (!onlyArg) writeFileSync(join(results, "latest.md"), markdown);
    const stamp = startedAt.toISOString().replace(/[:.]/g, "-");
    writeFileSync(
      join(results, `${quick ? "quick" : "full"}-${stamp}.json`),
      JSON.stringify(
        {
          mode: quick ? "quick" : "full",
          startedAt,
          seconds,
          params: P,
          machine: {
            cores: cpus().length,
            cpu: cpus()[0]?.model,
            node: process.version,
            loadAtStart,
            loadAtEnd: loadavg(),
            commitFileMicros: diskAtStart,
          },
          create,
          read,
          sse,
          many,
          cold,
          rss,
          slow,
          obs,
          edge,
          edgeCosts,
          tenants,
          webhooks,
        },
        null,
        2,
      ),
    );
    console.log(markdown);
    log(`done in ${seconds.toFixed(1)} s${onlyArg ? "" : "; table in bench/results/latest.md"}`);
  } finally {
    await Promise.all([http.close(), sseWorker.close(), probe.close(), idle.close()]);
  }
}

main()
  .then(() => {
    clearTimeout(deadline);
    cleanup();
    log("cleaned up");
  })
  .catch((error: unknown) => {
    console.error(error);
    cleanup();
    process.exit(1);
  });
