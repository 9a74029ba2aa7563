/**
 * The edge run: the Worker bundle in workerd (Miniflare 5), its rollout on S3 (the test
 * S3 server) and its cache on libSQL over HTTP (the Hrana test server), each behind a
 * loopback proxy that delays every request (20 ms by default, a store a region away) and
 * counts them. Each store runs in a process of its own (bench/load/stores.ts); the proxies
 * and the load run in the bench's. Measured twice: "before", the Worker without the SEQUENCER binding (every
 * request on its own, streams polling), and "after", with the thread's sequencer.
 *
 * - one thread, 16 concurrent writers for a while: creates/s, latency, non-2xx, the S3
 *   and libSQL requests per create (compaction included), and the S3 puts' time at the
 *   proxy (the injected distance plus the test server's own time: what a hot thread's
 *   throughput is made of, about 16 / (2 × put));
 * - single creates one after another: p50 latency;
 * - idle streams: store requests per stream per second while nothing is written;
 * - write-to-receive: one stream, creates one at a time; the receive time of each event
 *   minus the send time of its POST, against the POST's own latency.
 *
 * Both run with every per-tenant limit off (`0`): the rows stay comparable with the runs
 * before limits existed. Then "limits": what counting a tenant's writes adds to a single
 * create, on one Worker (sequencer on) with the `TENANT_LIMITER` object and the
 * `WRITE_LIMITER` Rate Limiting binding bound, and three tenants whose creates are
 * interleaved (so drift and noise fall on all three alike): one whose limits are `0`
 * (no count), one with a rate of its own (counted exactly in its TenantLimiter object: one
 * hop per create), and one at the default rate (the binding). Single creates only: p50
 * and p99 per tenant. In Miniflare both the object and the binding are local (the binding
 * is itself a local Durable Object there, unlike production, where it is a counter in the
 * Worker's own location): the rows measure the code path and a local hop, not the network.
 *
 * Then "costs": one Worker under the subrequest counter (test/support/worker-subrequests.ts),
 * each operation once (create, update, reads, history reads, a stream of one thread and of
 * `manyThreads`, fork, remove, delete; a webhook's delivery on its deliverer's side): the
 * subrequests its request made, by kind, beside the Workers plans' limits; and workerd's
 * process CPU per operation over `cpuReps` repetitions (an upper bound on the Worker's).
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { type FaultProxy, type ProxyTiming, startFaultProxy } from "../test/support/fault-proxy.ts";
import { S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY } from "../test/support/s3rver.ts";
import { startWorker } from "../test/support/worker-process.ts";
import { measureOperationCosts, type ObjectRow, type OperationCost } from "../test/support/worker-subrequests.ts";
import { WebhookReceiver } from "../test/support/webhook-receiver.ts";
import { childPids, cpuMs, ROOT, startLoadWorker } from "./lib/process.ts";
import type { S3Backend, StoresRequest } from "./load/stores.ts";
import { openSse } from "./lib/sse-client.ts";
import { httpPost } from "./lib/http-post.ts";
import { createBody, timedBody, timedFields } from "./lib/payload.ts";
import { percentile } from "./lib/stats.ts";

export interface EdgeParams {
  delayMs: number;
  /** What holds the test S3 server's objects (bench/load/stores.ts). */
  s3Backend: S3Backend;
  /** The 16-writer run (ms). */
  burstMs: number;
  singles: number;
  idleStreams: number;
  idleMs: number;
  receives: number;
  /** Threads of the many-threads stream whose subrequests are counted. */
  manyThreads: number;
  /** Repetitions of each operation whose CPU is measured. */
  cpuReps: number;
}

/** What each operation costs the Worker's request (subrequests) and workerd (CPU). */
export interface EdgeCosts {
  rows: (OperationCost & { cpuMs: number | null })[];
  /** A webhook's delivery, counted in its deliverer's alarm (an invocation of its own). */
  delivery: ObjectRow | null;
  manyThreads: number;
  cpuReps: number;
}

export interface EdgeResult {
  /** `before (no sequencer)`, `after (sequencer)`, or `limits: …` (single creates only; the rest NaN). */
  variant: string;
  writers: {
    creates: number;
    perSecond: number;
    p50: number;
    p99: number;
    /** Of the 16 writers' creates; for a `limits` row, of its single creates. */
    non2xx: number;
    s3PerCreate: number;
    libsqlPerCreate: number;
    /** The S3 PUTs' time at the distance proxy (arrival to answer, the 20 ms included). */
    putP50: number;
    putP99: number;
    /** Creates per commit put (a put of a key under `commits/`): how many writes a group carried. */
    createsPerCommitPut: number;
    /**
     * Between one commit put's answer and the next commit put's arrival at the proxy, p50
     * (ms): what a group waits for besides the put before it (negative: puts overlapped).
     */
    commitPutGapP50: number;
  };
  single: { p50: number; p99: number; n: number };
  idle: { streams: number; seconds: number; storeRequestsPerStreamPerSecond: number };
  receive: { p50: number; createP50: number };
}

const STORE_ENTRY = join(ROOT, "bench", "load", "stores.ts");
const TOKEN = "edge-bench";
const AUTH = { authorization: `Bearer ${TOKEN}` };
/** Every per-tenant limit off: the rows before limits existed, and the baseline. */
const NO_LIMITS = { RATE_LIMIT_WRITES: "0", RATE_LIMIT_READS: "0", MAX_STREAMS_PER_TENANT: "0" };

/** The limits run's tenants: how each one's creates are counted. */
const LIMIT_TENANTS = [
  { tenant: "none", variant: "limits: none (tenant's limits 0)" },
  { tenant: "exact", variant: "limits: exact (TenantLimiter object)" },
  { tenant: "binding", variant: "limits: binding (WRITE_LIMITER)" },
] as const;
/**
 * The default write rate, high enough never to refuse here, and the binding configured
 * as it (`N/s` is `limit = 10N` per 10 s); the `exact` tenant's rate differs, so its
 * object counts it.
 */
const BENCH_WRITE_RATE = { env: "100000/s", binding: { limit: 1_000_000, period: 10 as const }, exact: "100001/s" };

export async function benchEdge(
  params: EdgeParams,
  log: (message: string) => void,
): Promise<{ variants: EdgeResult[]; costs: EdgeCosts | null }> {
  // Each store runs in a process of its own (bench/load/stores.ts), off this one's event
  // loop, which drives the load; the distance proxies stay here and count.
  const stores = { s3: startLoadWorker(STORE_ENTRY), libsql: startLoadWorker(STORE_ENTRY) };
  const startStore = async (start: StoresRequest & { op: "start" }) =>
    (await stores[start.store].request<{ endpoint: string }>(start, 30_000)).endpoint;
  const s3 = {
    createBucket: async () =>
      (await stores.s3.request<{ bucket: string }>({ op: "createBucket" } satisfies StoresRequest, 10_000)).bucket,
  };
  const s3Proxy = await startFaultProxy(await startStore({ op: "start", store: "s3", backend: params.s3Backend }), {
    delayMs: params.delayMs,
    timed: true,
  });
  const libsqlProxy = await startFaultProxy(await startStore({ op: "start", store: "libsql" }), {
    delayMs: params.delayMs,
  });
  const results: EdgeResult[] = [];
  let costs: EdgeCosts | null = null;
  try {
    for (const sequencer of [false, true]) {
      const variant = sequencer ? "after (sequencer)" : "before (no sequencer)";
      const bucket = await s3.createBucket();
      const worker = await startWorker({
        BLOB_STORE: `s3://${bucket}?endpoint=${encodeURIComponent(s3Proxy.endpoint)}&region=${S3_REGION}`,
        AWS_ACCESS_KEY_ID: S3_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY: S3_SECRET_ACCESS_KEY,
        LIBSQL_URL: libsqlProxy.endpoint,
        AUTH_TOKENS: `${TOKEN}:acme`,
        // The 16-writer run grows one thread past the default 1,000 artifacts.
        MAX_ARTIFACTS_PER_THREAD: "1000000",
        ...NO_LIMITS,
      }, { sequencer });
      try {
        log(`edge ${variant}: 16 writers on one thread`);
        const writers = await sixteenWriters(worker.url, params.burstMs, s3Proxy, libsqlProxy);
        log(`edge ${variant}: single creates`);
        const single = await singles(worker.url, params.singles);
        log(`edge ${variant}: idle streams`);
        const idle = await idleStreams(worker.url, params.idleStreams, params.idleMs, s3Proxy, libsqlProxy);
        log(`edge ${variant}: write-to-receive`);
        const receive = await writeToReceive(worker.url, params.receives);
        results.push({ variant, writers, single, idle, receive });
      } finally {
        await worker.stop();
        rmSync(worker.persist, { recursive: true, force: true });
      }
    }
    const limits = await limitedSingles(
      await s3.createBucket(),
      { s3: s3Proxy.endpoint, libsql: libsqlProxy.endpoint },
      Math.max(100, params.singles * 4),
      log,
    );
    results.push(...limits);
    log(["", ...edgeLimitsReport(limits)].join("\n"));
    costs = await operationCosts(await s3.createBucket(), { s3: s3Proxy, libsql: libsqlProxy }, params, log);
  } finally {
    await libsqlProxy.close();
    await s3Proxy.close();
    for (const store of Object.values(stores)) {
      await store.request({ op: "close" } satisfies StoresRequest, 30_000).catch(() => undefined);
      await store.close();
    }
  }
  return { variants: results, costs };
}

/**
 * Subrequests and CPU per operation, on one Worker (sequencer, the tenant's limits in its
 * TenantLimiter as deployed by default, webhooks) under the subrequest counter
 * (test/support/worker-subrequests.ts): each operation once, its request's subrequests
 * counted by kind; then each again `cpuReps` times, one after another, the workerd
 * process's CPU (user + system, /proc) before and after divided by the repetitions. That
 * is the Worker's request, the objects' invocations it causes and workerd's own HTTP work
 * together: an upper bound on the Worker's CPU time (Workers Free: 10 ms).
 */
async function operationCosts(
  bucket: string,
  proxies: { s3: FaultProxy; libsql: FaultProxy },
  params: EdgeParams,
  log: (message: string) => void,
): Promise<EdgeCosts> {
  const receiver = await WebhookReceiver.start();
  const before = new Set(childPids(process.pid, "workerd"));
  const worker = await startWorker({
    BLOB_STORE: `s3://${bucket}?endpoint=${encodeURIComponent(proxies.s3.endpoint)}&region=${S3_REGION}`,
    AWS_ACCESS_KEY_ID: S3_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: S3_SECRET_ACCESS_KEY,
    LIBSQL_URL: proxies.libsql.endpoint,
    AUTH_TOKENS: `${TOKEN}:acme`,
    WEBHOOK_ALLOW_HTTP_LOOPBACK: "1",
    // Counted in the tenant's object, as by default, never reached here.
    RATE_LIMIT_WRITES: "100000/s",
    RATE_LIMIT_READS: "100000/s",
    MAX_STREAMS_PER_TENANT: "100000",
  }, { countSubrequests: true });
  const workerd = childPids(process.pid, "workerd").find((pid) => !before.has(pid));
  try {
    log(`edge costs: subrequests per operation (a stream of ${params.manyThreads} threads among them)`);
    const hostOf = (url: string) => new URL(url).host;
    const { rows, delivery } = await measureOperationCosts({
      base: worker.url,
      token: TOKEN,
      hosts: { s3: hostOf(proxies.s3.endpoint), libsql: hostOf(proxies.libsql.endpoint) },
      manyThreads: params.manyThreads,
      webhookUrl: receiver.url("/hook"),
      webhookCreated: (secret) => receiver.secrets.set("/hook", secret),
      webhookDelivered: async (n) => {
        const deadline = Date.now() + 30_000;
        while (receiver.received.filter((r) => r.status === 200).length < n) {
          if (Date.now() > deadline) throw new Error(`webhook: ${n} deliveries not made`);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      },
    });
    log(`edge costs: CPU per operation (${params.cpuReps} of each, workerd ${workerd ?? "not found"})`);
    const cpu = workerd === undefined ? new Map<string, number>() : await cpuPerOperation(worker.url, workerd, params);
    return {
      rows: rows.map((row) => ({ ...row, cpuMs: cpu.get(cpuKey(row.operation)) ?? null })),
      delivery,
      manyThreads: params.manyThreads,
      cpuReps: params.cpuReps,
    };
  } finally {
    await worker.stop();
    await receiver.close();
    rmSync(worker.persist, { recursive: true, force: true });
  }
}

/** The CPU rows are measured for the operations whose name starts with one of these. */
const CPU_OPERATIONS = ["create", "read (strong)", "stream, one thread", "stream, many", "fork", "delete thread"];

function cpuKey(operation: string): string {
  if (operation === "create (a thread's first)") return "";
  if (/^stream, \d+ threads/.test(operation)) return "stream, many";
  return CPU_OPERATIONS.find((name) => operation.startsWith(name)) ?? "";
}

/** workerd's CPU per operation (ms), each repeated `cpuReps` times one after another (streams: a fifth as many). */
async function cpuPerOperation(base: string, workerd: number, params: EdgeParams): Promise<Map<string, number>> {
  const stamp = Date.now().toString(36);
  const thread = `cpu-${stamp}`;
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: { ...AUTH, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    await response.arrayBuffer();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status}`);
  };
  const stream = async (path: string, events: number) => {
    let seen = 0;
    let resolve = () => {};
    const done = new Promise<void>((r) => (resolve = r));
    const sse = openSse(`${base}${path}`, () => {
      if (++seen >= events) resolve();
    }, AUTH);
    await sse.ready;
    await done;
    sse.close();
  };
  const measured = new Map<string, number>();
  const measure = async (name: string, reps: number, run: (i: number) => Promise<void>) => {
    await run(-1);
    const start = cpuMs(workerd);
    for (let i = 0; i < reps; i++) await run(i);
    measured.set(name, (cpuMs(workerd) - start) / reps);
  };
  const reps = params.cpuReps;
  const streams = Math.max(2, Math.round(reps / 5));
  await call("POST", `/v1/threads/${thread}/artifacts`, { artifactType: "n", payload: { i: 0 } });
  await measure("create", reps, (i) => call("POST", `/v1/threads/${thread}/artifacts`, JSON.parse(createBody(i))));
  await measure("read (strong)", reps, () => call("GET", `/v1/threads/${thread}`));
  for (let i = 0; i < 3; i++) {
    await call("POST", `/v1/threads/${thread}-s/artifacts`, { artifactType: "n", payload: { i } });
  }
  await measure("stream, one thread", streams, () => stream(`/v1/threads/${thread}-s/events?since=0`, 3));
  const many = Array.from({ length: params.manyThreads }, (_, i) => `${thread}-m${i}`);
  for (const id of many) await call("POST", `/v1/threads/${id}/artifacts`, { artifactType: "n", payload: {} });
  await measure("stream, many", streams, () => stream(`/v1/events?threads=${many.join(",")}`, many.length));
  await measure("fork", streams, (i) => call("POST", `/v1/threads/${thread}/fork`, { threadId: `${thread}-f${i}` }));
  await measure("delete thread", streams, (i) => call("DELETE", `/v1/threads/${thread}-f${i}`));
  return measured;
}

/** The subrequest table, beside the Workers plans' limits, and the CPU estimate (for the report). */
export function edgeCostsReport(costs: EdgeCosts | null): string[] {
  if (!costs) return [];
  const kinds = ["S3", "libSQL", "SEQUENCER", "TENANT_LIMITER", "WEBHOOKS", "R2", "fetch"].filter((kind) =>
    costs.rows.some((r) => (r.subrequests[kind] ?? 0) > 0)
  );
  const name = (kind: string) =>
    ({ SEQUENCER: "sequencer", TENANT_LIMITER: "tenant limiter", WEBHOOKS: "deliverer", fetch: "other fetch" })[
      kind
    ] ?? kind;
  const cell = (n: number) => (n === 0 ? "·" : String(n));
  const ms = (n: number | null) => (n === null || !Number.isFinite(n) ? "–" : n.toFixed(1));
  const scope = { single: "one thread", history: "one thread's history", many: "many threads" } as const;
  const lines = [
    "### edge: subrequests per operation, the Worker's request (Workers Free: 50 per request, Paid: 10,000)",
    "",
    "Counted in workerd by wrapping the bundle (test/support/worker-subrequests.ts): every `fetch` (S3, libSQL over HTTP), " +
    "every call into a Durable Object (a WebSocket to one included) and every R2 call the Worker's request makes, until it " +
    "ends (a stream: caught up, live a second, closed). The objects' own store calls are their invocations' (each its own " +
    "request with its own limits), not the Worker's: a webhook's delivery is counted in its deliverer's alarm. The tenant's " +
    "limits are counted in its TenantLimiter as deployed by default (one call per request; a stream's second call opens its " +
    "place under the cap, and a third gives it back when the Worker sees the stream end, not counted here). CPU: the workerd " +
    `process's (the Worker, the objects and workerd's own HTTP work together: an upper bound on the Worker's; Free allows 10 ms), ` +
    `${costs.cpuReps} of each operation one after another (streams a fifth as many).`,
    "",
    `| operation | scope | ${kinds.map(name).join(" | ")} | total | of Free's 50 | workerd CPU ms/op |`,
    `| --- | --- | ${kinds.map(() => "---:").join(" | ")} | ---: | ---: | ---: |`,
    ...costs.rows.map((r) =>
      `| ${r.operation} | ${scope[r.scope]} | ${
        kinds.map((k) => cell(r.subrequests[k] ?? 0)).join(" | ")
      } | ${r.total} | ${Math.round((r.total / 50) * 100)}% | ${ms(r.cpuMs)} |`
    ),
    "",
  ];
  if (costs.delivery) {
    const d = costs.delivery;
    lines.push(
      `A webhook delivery (its deliverer's alarm, per event delivered): ${
        Object.entries(d.subrequestsPer).map(([k, v]) =>
          `${v.toFixed(1)} ${k === "fetch" ? "POST to the receiver" : k}`
        )
          .join(", ")
      }; ${d.totalPer.toFixed(1)} subrequests of the alarm's own, in ${d.invocationsPer.toFixed(1)} alarm invocations.`,
      "",
    );
  }
  const many = costs.rows.find((r) => r.scope === "many" && r.operation.startsWith("stream"));
  if (many) {
    lines.push(
      `A stream of N threads: N WebSockets to sequencers + 1 libSQL query for the catch-up of all of them + the tenant's ` +
        `limiter (2, and 1 at the end) + 1 libSQL query per safety poll (once a minute, ≤ 5 in a stream's 5-minute life): ` +
        `N + 9 at most, so Workers Free (50) takes MAX_STREAM_THREADS = 40 (measured here for N = ${costs.manyThreads}: ${many.total} at its start).`,
      "",
    );
  }
  return lines;
}

function post(base: string, threadId: string, body: string): Promise<number> {
  return httpPost(`${base}/v1/threads/${threadId}/artifacts`, { ...AUTH, "content-type": "application/json" }, body);
}

async function sixteenWriters(
  base: string,
  ms: number,
  s3: FaultProxy,
  libsql: FaultProxy,
): Promise<EdgeResult["writers"]> {
  const threadId = `edge-writers-${Date.now().toString(36)}`;
  await post(base, threadId, createBody(0));
  s3.resetCount();
  libsql.resetCount();
  const latencies: number[] = [];
  let non2xx = 0;
  const started = performance.now();
  const end = started + ms;
  await Promise.all(Array.from({ length: 16 }, async (_, w) => {
    for (let i = 0; performance.now() < end; i++) {
      const t = performance.now();
      const status = await post(base, threadId, createBody(w * 100_000 + i)).catch(() => 0);
      if (status >= 200 && status < 300) latencies.push(performance.now() - t);
      else non2xx++;
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  const creates = latencies.length;
  const puts = s3.timings.filter((t) => t.method === "PUT").map((t) => t.ms);
  const commitPuts = s3.timings.filter((t) => t.method === "PUT" && t.path.includes("/commits/"))
    .sort((a, b) => a.at - b.at);
  const gaps = commitPuts.slice(1).map((put, i) =>
    put.at - ((commitPuts[i] as ProxyTiming).at + (commitPuts[i] as ProxyTiming).ms)
  );
  return {
    creates,
    perSecond: creates / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    non2xx,
    s3PerCreate: s3.count / Math.max(1, creates),
    libsqlPerCreate: libsql.count / Math.max(1, creates),
    putP50: percentile(puts, 50),
    putP99: percentile(puts, 99),
    createsPerCommitPut: creates / Math.max(1, commitPuts.length),
    commitPutGapP50: percentile(gaps, 50),
  };
}

async function singles(base: string, n: number): Promise<EdgeResult["single"]> {
  const threadId = `edge-single-${Date.now().toString(36)}`;
  const latencies: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    if ((await post(base, threadId, createBody(i))) === 201 && i > 0) latencies.push(performance.now() - t);
  }
  return { p50: percentile(latencies, 50), p99: percentile(latencies, 99), n: latencies.length };
}

/**
 * The limits run: `n` single creates per tenant (after two unmeasured ones each, which
 * load the thread's sequencer and the tenant's object), the tenants taking turns, each on
 * its own thread.
 */
async function limitedSingles(
  bucket: string,
  endpoints: { s3: string; libsql: string },
  n: number,
  log: (message: string) => void,
): Promise<EdgeResult[]> {
  const tokens = LIMIT_TENANTS.map(({ tenant }) => `${TOKEN}-${tenant}:${tenant}`).join(",");
  const worker = await startWorker({
    BLOB_STORE: `s3://${bucket}?endpoint=${encodeURIComponent(endpoints.s3)}&region=${S3_REGION}`,
    AWS_ACCESS_KEY_ID: S3_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: S3_SECRET_ACCESS_KEY,
    LIBSQL_URL: endpoints.libsql,
    AUTH_TOKENS: tokens,
    RATE_LIMIT_WRITES: BENCH_WRITE_RATE.env,
    RATE_LIMIT_READS: "0",
    MAX_STREAMS_PER_TENANT: "0",
    RATE_LIMIT_TENANTS: JSON.stringify({
      none: { writes: "0" },
      exact: { writes: BENCH_WRITE_RATE.exact },
    }),
  }, { rateLimits: { writes: BENCH_WRITE_RATE.binding } });
  try {
    log(`edge limits: ${n} single creates per tenant, interleaved (none, exact, binding)`);
    const stamp = Date.now().toString(36);
    const runs = LIMIT_TENANTS.map(({ tenant, variant }) => ({
      variant,
      threadId: `edge-limits-${tenant}-${stamp}`,
      headers: { authorization: `Bearer ${TOKEN}-${tenant}`, "content-type": "application/json" },
      latencies: [] as number[],
      non2xx: 0,
    }));
    const create = async (run: (typeof runs)[number], i: number) => {
      const t = performance.now();
      const response = await fetch(`${worker.url}/v1/threads/${run.threadId}/artifacts`, {
        method: "POST",
        headers: run.headers,
        body: createBody(i),
      }).catch(() => null);
      await response?.arrayBuffer();
      return { status: response?.status ?? 0, ms: performance.now() - t };
    };
    for (const run of runs) for (let i = 0; i < 2; i++) await create(run, i);
    for (let i = 0; i < n; i++) {
      // A different tenant first each round: none is always the one right after another's.
      for (let k = 0; k < runs.length; k++) {
        const run = runs[(i + k) % runs.length] as (typeof runs)[number];
        const { status, ms } = await create(run, 2 + i);
        if (status === 201) run.latencies.push(ms);
        else run.non2xx++;
      }
    }
    return runs.map((run) => {
      const single = {
        p50: percentile(run.latencies, 50),
        p99: percentile(run.latencies, 99),
        n: run.latencies.length,
      };
      log(
        `edge ${run.variant}: single create p50 ${single.p50.toFixed(1)} ms, p99 ${
          single.p99.toFixed(1)
        } ms (n=${single.n}, non-2xx ${run.non2xx})`,
      );
      return {
        variant: run.variant,
        writers: { ...NOT_MEASURED.writers, non2xx: run.non2xx },
        single,
        idle: NOT_MEASURED.idle,
        receive: NOT_MEASURED.receive,
      };
    });
  } finally {
    await worker.stop();
    rmSync(worker.persist, { recursive: true, force: true });
  }
}

const NOT_MEASURED = {
  writers: {
    creates: Number.NaN,
    perSecond: Number.NaN,
    p50: Number.NaN,
    p99: Number.NaN,
    non2xx: 0,
    s3PerCreate: Number.NaN,
    libsqlPerCreate: Number.NaN,
    putP50: Number.NaN,
    putP99: Number.NaN,
    createsPerCommitPut: Number.NaN,
    commitPutGapP50: Number.NaN,
  },
  idle: { streams: 0, seconds: 0, storeRequestsPerStreamPerSecond: Number.NaN },
  receive: { p50: Number.NaN, createP50: Number.NaN },
} satisfies Omit<EdgeResult, "variant" | "single">;

/**
 * The limits rows as their own table (single creates p50 / p99 and what each adds to the
 * `none` tenant's), for the report: run.ts's edge table shows their p50 in its "single
 * create p50" column only.
 */
export function edgeLimitsReport(edge: readonly EdgeResult[]): string[] {
  const rows = edge.filter((r) => r.variant.startsWith("limits:"));
  if (rows.length === 0) return [];
  const none = rows.find((r) => r.variant.startsWith("limits: none"));
  const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "–");
  const plus = (n: number) => (Number.isFinite(n) ? `${n >= 0 ? "+" : ""}${n.toFixed(1)}` : "–");
  return [
    "### edge: what counting a tenant's writes adds to a single create (one Worker, tenants interleaved)",
    "",
    "| how the tenant's writes are counted | creates | non-2xx | p50 ms | p99 ms | p50 vs none | p99 vs none |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rows.map((r) =>
      `| ${r.variant.slice("limits: ".length)} | ${r.single.n} | ${r.writers.non2xx} | ${ms(r.single.p50)} | ${
        ms(r.single.p99)
      } | ${none ? plus(r.single.p50 - none.single.p50) : "–"} | ${none ? plus(r.single.p99 - none.single.p99) : "–"} |`
    ),
    "",
  ];
}

async function idleStreams(
  base: string,
  count: number,
  ms: number,
  s3: FaultProxy,
  libsql: FaultProxy,
): Promise<EdgeResult["idle"]> {
  const threadId = `edge-idle-${Date.now().toString(36)}`;
  await post(base, threadId, createBody(0));
  const streams = Array.from(
    { length: count },
    () => openSse(`${base}/v1/threads/${threadId}/events?since=1`, () => {}, AUTH),
  );
  await Promise.all(streams.map((s) => s.ready));
  // Let every stream finish catching up before counting.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  s3.resetCount();
  libsql.resetCount();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const requests = s3.count + libsql.count;
  for (const stream of streams) stream.close();
  return { streams: count, seconds: ms / 1000, storeRequestsPerStreamPerSecond: requests / count / (ms / 1000) };
}

async function writeToReceive(base: string, n: number): Promise<EdgeResult["receive"]> {
  const threadId = `edge-receive-${Date.now().toString(36)}`;
  const received = new Map<number, number>();
  const stream = openSse(`${base}/v1/threads/${threadId}/events`, (data, at) => {
    const fields = timedFields(data);
    if (fields) received.set(fields.i, at - fields.sentAt);
  }, AUTH);
  await stream.ready;
  const creates: number[] = [];
  for (let i = 0; i < n; i++) {
    const sentAt = performance.now();
    await post(base, threadId, timedBody(i, sentAt));
    creates.push(performance.now() - sentAt);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await new Promise((resolve) => setTimeout(resolve, 3000));
  stream.close();
  return { p50: percentile([...received.values()], 50), createP50: percentile(creates, 50) };
}
