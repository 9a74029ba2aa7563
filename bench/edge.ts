/**
 * The edge run: the Worker bundle in workerd (Miniflare 5), its rollout on S3 (the test
 * S3 server) and its cache on libSQL over HTTP (the Hrana test server), each behind a
 * loopback proxy that delays every request (20 ms by default, a store a region away) and
 * counts them. Measured twice: "before", the Worker without the SEQUENCER binding (every
 * request on its own, streams polling), and "after", with the thread's sequencer.
 *
 * - one thread, 16 concurrent writers for a while: creates/s, latency, non-2xx, and the
 *   S3 and libSQL requests per create (compaction included);
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
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type FaultProxy, startFaultProxy } from "../test/support/fault-proxy.ts";
import { startHranaServer } from "../test/support/hrana-server.ts";
import { S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY, startS3rver } from "../test/support/s3rver.ts";
import { startWorker } from "../test/support/worker-process.ts";
import { openSse } from "./lib/sse-client.ts";
import { createBody, timedBody, timedFields } from "./lib/payload.ts";
import { percentile } from "./lib/stats.ts";

export interface EdgeParams {
  delayMs: number;
  /** The 16-writer run (ms). */
  burstMs: number;
  singles: number;
  idleStreams: number;
  idleMs: number;
  receives: number;
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
  };
  single: { p50: number; p99: number; n: number };
  idle: { streams: number; seconds: number; storeRequestsPerStreamPerSecond: number };
  receive: { p50: number; createP50: number };
}

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

export async function benchEdge(params: EdgeParams, log: (message: string) => void): Promise<EdgeResult[]> {
  const s3 = await startS3rver();
  const dir = mkdtempSync(join(tmpdir(), "artifacts-edge-bench-"));
  const hrana = await startHranaServer({ path: join(dir, "cache.db") });
  const s3Proxy = await startFaultProxy(s3.endpoint, { delayMs: params.delayMs });
  const libsqlProxy = await startFaultProxy(hrana.url, { delayMs: params.delayMs });
  const results: EdgeResult[] = [];
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
  } finally {
    await libsqlProxy.close();
    await s3Proxy.close();
    await hrana.close();
    await s3.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

async function post(base: string, threadId: string, body: string): Promise<number> {
  const response = await fetch(`${base}/v1/threads/${threadId}/artifacts`, {
    method: "POST",
    headers: { ...AUTH, "content-type": "application/json" },
    body,
  });
  await response.arrayBuffer();
  return response.status;
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
  return {
    creates,
    perSecond: creates / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    non2xx,
    s3PerCreate: s3.count / Math.max(1, creates),
    libsqlPerCreate: libsql.count / Math.max(1, creates),
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
