/**
 * Webhooks (API.md "Webhooks"; docs/decisions.md "Webhooks"): what delivery costs and how
 * fast it is, against our Node server with WEBHOOK_ALLOW_HTTP_LOOPBACK=1 and a receiver in
 * this process (node:http on 127.0.0.1 answering 200, or 503 during an outage; it counts
 * and times, it does not verify signatures).
 *
 * - **Latency**: one thread takes `ratePerS` creates a second (open loop, from this
 *   process), followed by 1 and by 20 webhooks (each its own path, fresh server each);
 *   a sample is receive time − the send time of the POST whose 201 named the event's seq,
 *   for every (webhook, event) pair, both on this process's monotonic clock.
 * - **Backlog drain**: 1 webhook whose receiver answers 503 for `outageS` while the thread
 *   takes `ratePerS` writes a second, then 200 again (writes go on): the events waiting at
 *   recovery, when the next attempt came (the retry backoff), when the last waiting event
 *   arrived, the drain rate. With the default WEBHOOK_RETRY_BASE_MS and the variants given.
 * - **Write path**: create throughput (autocannon, `threads` threads, `connections`
 *   connections) with no webhooks and with `webhooks` webhooks following every thread,
 *   alternating round by round, each on a fresh server and data folder; deliveries run
 *   during the measurement (the receiver answers 200). Median round of each.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { HttpResult, HttpRun } from "./load/http.ts";
import { createBody } from "./lib/payload.ts";
import { cpuMs, type ServerProcess, sleep } from "./lib/process.ts";
import { summarize } from "./lib/stats.ts";

export interface WebhooksParams {
  /** Creates per second on the measured thread (latency and drain). */
  ratePerS: number;
  /** Measured writes' span for latency (s), after `latencyWarmupS` of the same writes. */
  latencyS: number;
  latencyWarmupS: number;
  /** Webhooks on the thread, one latency run each. */
  fanouts: number[];
  /** How long the receiver answers 503 (s). */
  outageS: number;
  /** WEBHOOK_RETRY_BASE_MS of each drain run; null: the default (1000). */
  retryBasesMs: (number | null)[];
  /** Write path: rounds of each variant, and each round's autocannon run. */
  rounds: number;
  durationS: number;
  warmupS: number;
  connections: number;
  threads: number;
  /** Webhooks on every thread in the write path's measured variant. */
  webhooks: number;
}

export interface WebhooksDeps {
  withOurs: <T>(name: string, env: Record<string, string>, body: (server: ServerProcess) => Promise<T>) => Promise<T>;
  measure: (server: ServerProcess, run: HttpRun) => Promise<HttpResult>;
  log: (message: string) => void;
}

export interface LatencyRow {
  webhooks: number;
  writes: number;
  /** (webhook, event) pairs expected, and received. */
  expected: number;
  delivered: number;
  /** Receive − send (ms); lost pairs count as slower than all (null where a percentile lands on one). */
  p50: number | null;
  p99: number | null;
  max: number | null;
  postP50: number;
  postP99: number;
  /** Server CPU (user + system) over the measured writes and their deliveries, per create (ms). */
  cpuMsPerCreate: number;
  writeFailures: number;
  duplicates: number;
  outOfOrder: number;
}

export interface DrainRow {
  variant: string;
  retryBaseMs: number | null;
  outageS: number;
  /** Events committed at recovery and not acknowledged by the receiver. */
  waiting: number;
  /** 503s the receiver gave, as seconds after the outage began. */
  failedAttemptsS: number[];
  /** Recovery → the first attempt after it (the backoff still running), s. */
  firstAttemptAfterS: number | null;
  /** Recovery → the last waiting event's arrival, s (null: not within the bound). */
  lastArrivedAfterS: number | null;
  /** First attempt after recovery → the last waiting event, s, and the rate over it. */
  drainS: number | null;
  drainPerS: number | null;
  /** Recovery → every event written (writes stop once the backlog is drained) delivered, s. */
  caughtUpAfterS: number | null;
  writes: number;
  writeFailures: number;
  duplicates: number;
  outOfOrder: number;
}

export interface WritePathRow {
  variant: string;
  webhooks: number;
  rounds: number[];
  median: number;
  cpuMs: number;
  /** Median per round: deliveries received per second over the load (warm-up + measured run). */
  deliveriesPerS: number;
  /** Median: the part of (events × webhooks) delivered by the end of the load. */
  deliveredShare: number;
  /** Median: the bench process's CPU (the receiver's, mostly) per delivery (ms). */
  receiverCpuMsPerDelivery: number;
  /** Median p50 of the creates (ms). */
  p50: number;
  /**
   * Median over rounds of this variant's req/s over no webhooks' in the same round (the
   * figure the goal judges: it cancels the drift between rounds); absent for no webhooks.
   */
  pairedRatio: number | undefined;
}

export interface WebhooksRows {
  latency: LatencyRow[];
  drain: DrainRow[];
  writes: WritePathRow[];
}

// ---------------------------------------------------------------- the receiver

/** Decides the answer to one delivery: `path` (with query), the body, its monotonic arrival time. */
type Handler = (path: string, body: Buffer, at: number) => number;

interface Receiver {
  url: string;
  /** null: count and answer 200 without reading the body into memory. */
  handler: Handler | null;
  /** Deliveries (attempts) answered so far. */
  received(): number;
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  let received = 0;
  const receiver = {
    url: "",
    handler: null as Handler | null,
    received: () => received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer((request, response) => {
    const handler = receiver.handler;
    if (!handler) {
      request.resume();
      request.on("end", () => {
        received++;
        response.writeHead(200).end();
      });
      return;
    }
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const at = performance.now();
      received++;
      let status: number;
      try {
        status = handler(request.url ?? "/", Buffer.concat(chunks), at);
      } catch {
        status = 500;
      }
      response.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return receiver;
}

/** First arrival of each (path, seq) of one thread, with repeats and order checked per path. */
class Receipts {
  readonly #byPath = new Map<string, Map<number, number>>();
  readonly #last = new Map<string, number>();
  duplicates = 0;
  outOfOrder = 0;

  constructor(readonly threadId: string, paths: readonly string[]) {
    for (const path of paths) this.#byPath.set(path, new Map());
  }

  record(path: string, body: Buffer, at: number): void {
    const seen = this.#byPath.get(path);
    if (!seen) return;
    const message = JSON.parse(body.toString("utf8")) as { data?: { threadId?: string; seq?: number } };
    const seq = message.data?.seq;
    if (message.data?.threadId !== this.threadId || typeof seq !== "number") return;
    if (seen.has(seq)) {
      this.duplicates++;
      return;
    }
    if (seq < (this.#last.get(path) ?? 0)) this.outOfOrder++;
    this.#last.set(path, seq);
    seen.set(seq, at);
  }

  at(path: string, seq: number): number | undefined {
    return this.#byPath.get(path)?.get(seq);
  }

  count(): number {
    let n = 0;
    for (const seen of this.#byPath.values()) n += seen.size;
    return n;
  }

  /** The highest seq acknowledged on `path` (0: none). */
  last(path: string): number {
    return this.#last.get(path) ?? 0;
  }
}

// ---------------------------------------------------------------- the writer

interface Writer {
  /** seq → monotonic send time of the POST whose 201 named it. */
  readonly sentAt: Map<number, number>;
  readonly postMs: number[];
  /** The highest seq answered so far (0: none). */
  maxSeq(): number;
  failures(): number;
  /** Stops sending and waits for the answers in flight. */
  stop(): Promise<void>;
}

/** Open loop: POST `n` goes out at start + n / ratePerS whatever the answers do (at most `maxCount`). */
function startWriter(baseUrl: string, threadId: string, ratePerS: number, maxCount: number): Writer {
  const sentAt = new Map<number, number>();
  const postMs: number[] = [];
  let maxSeq = 0;
  let failures = 0;
  let stopped = false;
  const inFlight = new Set<Promise<void>>();
  const url = `${baseUrl}/v1/threads/${threadId}/artifacts`;
  const post = async (i: number) => {
    const t0 = performance.now();
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: createBody(i),
        signal: AbortSignal.timeout(10_000),
      });
      const text = await response.text();
      if (response.status !== 201) {
        failures++;
        return;
      }
      postMs.push(performance.now() - t0);
      const seq = (JSON.parse(text) as { artifact: { seq: number } }).artifact.seq;
      sentAt.set(seq, t0);
      if (seq > maxSeq) maxSeq = seq;
    } catch {
      failures++;
    }
  };
  const start = performance.now();
  const interval = 1000 / ratePerS;
  const loop = (async () => {
    for (let i = 0; i < maxCount && !stopped; i++) {
      const wait = start + i * interval - performance.now();
      if (wait > 0) await sleep(wait);
      if (stopped) break;
      const sending = post(i);
      inFlight.add(sending);
      void sending.finally(() => inFlight.delete(sending));
    }
  })();
  return {
    sentAt,
    postMs,
    maxSeq: () => maxSeq,
    failures: () => failures,
    async stop() {
      stopped = true;
      await loop;
      await Promise.all([...inFlight]);
    },
  };
}

/** Polls `done` every 10 ms until it holds or `timeoutMs` passes; whether it held. */
async function until(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  while (!done()) {
    if (performance.now() > end) return false;
    await sleep(10);
  }
  return true;
}

async function createWebhook(baseUrl: string, url: string, threads?: string[]): Promise<void> {
  const response = await fetch(`${baseUrl}/v1/webhooks`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(threads ? { url, threads } : { url }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  if (response.status !== 201) throw new Error(`POST /v1/webhooks: HTTP ${response.status} ${text}`);
}

/** The thread's last seq (its ETag), read from the cache. */
async function headOf(baseUrl: string, threadId: string): Promise<number> {
  const response = await fetch(`${baseUrl}/v1/threads/${threadId}?consistency=cache`, {
    signal: AbortSignal.timeout(10_000),
  });
  await response.arrayBuffer();
  if (response.status === 404) return 0;
  const etag = response.headers.get("etag") ?? "";
  const seq = Number(/"?(\d+)"?/.exec(etag)?.[1]);
  if (response.status !== 200 || !Number.isFinite(seq)) {
    throw new Error(`GET thread ${threadId}: HTTP ${response.status}`);
  }
  return seq;
}

const ENV = { WEBHOOK_ALLOW_HTTP_LOOPBACK: "1" };
const median = (values: readonly number[]) => {
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b);
  return finite.length === 0 ? Number.NaN : (finite[Math.floor(finite.length / 2)] as number);
};
const orNull = (n: number) => (Number.isFinite(n) ? n : null);

// ---------------------------------------------------------------- the phases

async function latencyRun(
  params: WebhooksParams,
  deps: WebhooksDeps,
  receiver: Receiver,
  fanout: number,
): Promise<LatencyRow> {
  return deps.withOurs(`webhooks latency, ${fanout} webhook(s)`, ENV, async (server) => {
    const thread = `wh-latency-${fanout}`;
    const paths = Array.from({ length: fanout }, (_, i) => `/latency-${fanout}-${i}`);
    for (const path of paths) await createWebhook(server.url, `${receiver.url}${path}`, [thread]);
    const receipts = new Receipts(thread, paths);
    receiver.handler = (path, body, at) => {
      receipts.record(path, body, at);
      return 200;
    };
    try {
      // Warm-up: the same writes, until every webhook has the last of them (leases taken, connections open).
      deps.log(`webhooks: latency, ${fanout} webhook(s): warm-up`);
      const warm = startWriter(server.url, thread, params.ratePerS, params.latencyWarmupS * params.ratePerS);
      await sleep(params.latencyWarmupS * 1000);
      await warm.stop();
      const warmTop = warm.maxSeq();
      if (!(await until(() => paths.every((p) => receipts.at(p, warmTop) !== undefined), 30_000))) {
        throw new Error(`webhooks latency: the warm-up's events did not all arrive within 30 s`);
      }
      deps.log(`webhooks: latency, ${fanout} webhook(s): ${params.latencyS} s at ${params.ratePerS}/s`);
      const count = params.latencyS * params.ratePerS;
      const cpu0 = cpuMs(server.pid);
      const writer = startWriter(server.url, thread, params.ratePerS, count);
      await sleep(params.latencyS * 1000);
      await writer.stop();
      const seqs = [...writer.sentAt.keys()];
      await until(() => seqs.every((seq) => paths.every((p) => receipts.at(p, seq) !== undefined)), 10_000);
      const cpuMsPerCreate = (cpuMs(server.pid) - cpu0) / count;
      const samples: number[] = [];
      let delivered = 0;
      for (const [seq, sentAt] of writer.sentAt) {
        for (const path of paths) {
          const at = receipts.at(path, seq);
          if (at === undefined) samples.push(Number.POSITIVE_INFINITY);
          else {
            delivered++;
            samples.push(at - sentAt);
          }
        }
      }
      const latency = summarize(samples);
      const post = summarize(writer.postMs);
      return {
        webhooks: fanout,
        writes: count,
        expected: samples.length,
        delivered,
        p50: orNull(latency.p50),
        p99: orNull(latency.p99),
        max: orNull(latency.max),
        postP50: post.p50,
        postP99: post.p99,
        cpuMsPerCreate,
        writeFailures: writer.failures(),
        duplicates: receipts.duplicates,
        outOfOrder: receipts.outOfOrder,
      };
    } finally {
      receiver.handler = null;
    }
  });
}

async function drainRun(
  params: WebhooksParams,
  deps: WebhooksDeps,
  receiver: Receiver,
  retryBaseMs: number | null,
): Promise<DrainRow> {
  const variant = retryBaseMs === null
    ? "defaults (WEBHOOK_RETRY_BASE_MS 1000)"
    : `WEBHOOK_RETRY_BASE_MS=${retryBaseMs}`;
  const env = retryBaseMs === null ? ENV : { ...ENV, WEBHOOK_RETRY_BASE_MS: String(retryBaseMs) };
  return deps.withOurs(`webhooks drain, ${variant}`, env, async (server) => {
    const thread = "wh-drain";
    const path = `/drain-${retryBaseMs ?? "default"}`;
    await createWebhook(server.url, `${receiver.url}${path}`, [thread]);
    const receipts = new Receipts(thread, [path]);
    let down = false;
    let recoveredAt: number | null = null;
    let firstAttemptAfter: number | null = null;
    const failedAt: number[] = [];
    receiver.handler = (p, body, at) => {
      if (p !== path) return 200;
      if (down) {
        failedAt.push(at);
        return 503;
      }
      if (recoveredAt !== null) firstAttemptAfter ??= at;
      receipts.record(p, body, at);
      return 200;
    };
    const writers: Writer[] = [];
    try {
      deps.log(`webhooks: drain, ${variant}: warm-up`);
      const warm = startWriter(server.url, thread, params.ratePerS, params.ratePerS);
      writers.push(warm);
      await warm.stop();
      const warmTop = warm.maxSeq();
      if (!(await until(() => receipts.last(path) >= warmTop, 30_000))) {
        throw new Error("webhooks drain: the warm-up's events did not arrive within 30 s");
      }
      deps.log(`webhooks: drain, ${variant}: the receiver answers 503 for ${params.outageS} s`);
      down = true;
      const downAt = performance.now();
      const acked = receipts.last(path);
      // Writes go on through the outage and the drain (bounded: the outage plus the longest wait below).
      const boundS = 2 * params.outageS + 60;
      const writer = startWriter(server.url, thread, params.ratePerS, (params.outageS + boundS + 1) * params.ratePerS);
      writers.push(writer);
      await sleep(params.outageS * 1000);
      const top = writer.maxSeq();
      recoveredAt = performance.now();
      down = false;
      deps.log(`webhooks: drain, ${variant}: 200 again; ${top - acked} events waiting`);
      const drained = await until(() => receipts.at(path, top) !== undefined, boundS * 1000);
      await writer.stop();
      const written = writer.maxSeq();
      const caughtUp = drained && (await until(() => receipts.last(path) >= written, 30_000));
      const lastAt = receipts.at(path, top);
      const seconds = (ms: number) => ms / 1000;
      const drainMs = lastAt !== undefined && firstAttemptAfter !== null ? lastAt - firstAttemptAfter : null;
      return {
        variant,
        retryBaseMs,
        outageS: params.outageS,
        waiting: top - acked,
        failedAttemptsS: failedAt.map((at) => seconds(at - downAt)),
        firstAttemptAfterS: firstAttemptAfter === null ? null : seconds(firstAttemptAfter - recoveredAt),
        lastArrivedAfterS: lastAt === undefined ? null : seconds(lastAt - recoveredAt),
        drainS: drainMs === null ? null : seconds(drainMs),
        drainPerS: drainMs === null || drainMs <= 0 ? null : (top - acked) / seconds(drainMs),
        caughtUpAfterS: caughtUp ? seconds(receipts.at(path, written)! - recoveredAt) : null,
        writes: writer.sentAt.size,
        writeFailures: writer.failures(),
        duplicates: receipts.duplicates,
        outOfOrder: receipts.outOfOrder,
      };
    } finally {
      await Promise.all(writers.map((w) => w.stop()));
      receiver.handler = null;
    }
  });
}

interface WriteRound {
  rps: number;
  cpuMs: number;
  p50: number;
  deliveriesPerS: number;
  deliveredShare: number;
  receiverCpuMsPerDelivery: number;
}

async function writeRound(
  params: WebhooksParams,
  deps: WebhooksDeps,
  receiver: Receiver,
  round: number,
  webhooks: number,
): Promise<WriteRound> {
  const prefix = `wh-writes-${round}-${webhooks}-`;
  return deps.withOurs(`webhooks writes, round ${round + 1}, ${webhooks} webhooks`, ENV, async (server) => {
    for (let i = 0; i < webhooks; i++) await createWebhook(server.url, `${receiver.url}/writes-${round}-${i}`);
    const run: HttpRun = {
      name: "webhooks writes",
      method: "POST",
      path: "/v1/threads/{thread}/artifacts",
      threads: params.threads,
      threadPrefix: prefix,
      body: createBody(),
      connections: params.connections,
      durationS: params.durationS,
      warmupS: params.warmupS,
    };
    receiver.handler = null;
    const received0 = receiver.received();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const result = await deps.measure(server, run);
    const elapsedS = (performance.now() - t0) / 1000;
    const deliveries = receiver.received() - received0;
    const cpu = process.cpuUsage(cpu0);
    let events = 0;
    if (webhooks > 0) {
      for (let i = 0; i < params.threads; i++) events += await headOf(server.url, `${prefix}${i}`);
    }
    return {
      rps: result.rps,
      cpuMs: result.cpuMsPerRequest ?? Number.NaN,
      p50: result.p50,
      deliveriesPerS: deliveries / elapsedS,
      deliveredShare: webhooks > 0 && events > 0 ? deliveries / (events * webhooks) : Number.NaN,
      receiverCpuMsPerDelivery: deliveries > 0 ? (cpu.user + cpu.system) / 1000 / deliveries : Number.NaN,
    };
  });
}

export async function benchWebhooks(params: WebhooksParams, deps: WebhooksDeps): Promise<WebhooksRows> {
  const receiver = await startReceiver();
  try {
    const latency: LatencyRow[] = [];
    for (const fanout of params.fanouts) latency.push(await latencyRun(params, deps, receiver, fanout));
    const drain: DrainRow[] = [];
    for (const base of params.retryBasesMs) drain.push(await drainRun(params, deps, receiver, base));
    const variants = [0, params.webhooks];
    const rounds = variants.map(() => [] as WriteRound[]);
    for (let round = 0; round < params.rounds; round++) {
      // Every other round runs them in reverse: each round leaves its files behind and the
      // disk slows as they pile up (bench/lib/fs-probe.ts), so a fixed order would charge
      // that drift to whichever variant always runs second.
      const order = round % 2 === 0 ? [...variants.entries()] : [...variants.entries()].reverse();
      for (const [index, webhooks] of order) {
        deps.log(`webhooks: write path, round ${round + 1}, ${webhooks} webhooks`);
        rounds[index]!.push(await writeRound(params, deps, receiver, round, webhooks));
      }
    }
    const writes = variants.map((webhooks, index): WritePathRow => {
      const rs = rounds[index]!;
      const base = rounds[0]!;
      return {
        pairedRatio: index === 0 ? undefined : median(rs.map((r, round) => r.rps / base[round]!.rps)),
        variant: webhooks === 0 ? "no webhooks" : `${webhooks} webhooks on every thread`,
        webhooks,
        rounds: rs.map((r) => r.rps),
        median: median(rs.map((r) => r.rps)),
        cpuMs: median(rs.map((r) => r.cpuMs)),
        p50: median(rs.map((r) => r.p50)),
        deliveriesPerS: median(rs.map((r) => r.deliveriesPerS)),
        deliveredShare: median(rs.map((r) => r.deliveredShare)),
        receiverCpuMsPerDelivery: median(rs.map((r) => r.receiverCpuMsPerDelivery)),
      };
    });
    return { latency, drain, writes };
  } finally {
    await receiver.close();
  }
}

// ---------------------------------------------------------------- the report

const f = (n: number | null, digits = 1) => (n !== null && Number.isFinite(n) ? n.toFixed(digits) : "–");
const fx = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}×` : "–");
const lat = (n: number | null, digits = 1) => (n === null ? "lost" : f(n, digits));

/** The report's sections and goals (the issue: the write path with 20 webhooks ≥ 0.95× without; the rest measured). */
export function webhooksReport(rows: WebhooksRows, params: WebhooksParams) {
  const goals: { goal: string; measured: string; met: boolean }[] = [];
  const lines = [
    `## webhooks: commit → receiver latency (one thread, ${params.ratePerS} creates/s open loop, ${params.latencyS} s after ${params.latencyWarmupS} s warm-up)`,
    "",
    "Receiver: node:http on 127.0.0.1 in the bench process, answering 200 at once. Latency = monotonic arrival of the " +
    "delivery's body − send time of the POST whose 201 named its seq; every (webhook, event) pair is a sample " +
    "(one not delivered within 10 s of the last send counts as lost). Fresh server per row.",
    "",
    "| webhooks on the thread | p50 ms | p99 ms | max ms | delivered | repeats | out of order | POST p50 ms | POST p99 ms | server CPU ms per create (with its deliveries) |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of rows.latency) {
    lines.push(
      `| ${r.webhooks} | ${lat(r.p50, 2)} | ${lat(r.p99, 2)} | ${lat(r.max)} | ${r.delivered}/${r.expected}${
        r.writeFailures ? ` (${r.writeFailures} POSTs failed)` : ""
      } | ${r.duplicates} | ${r.outOfOrder} | ${f(r.postP50, 2)} | ${f(r.postP99, 2)} | ${f(r.cpuMsPerCreate, 2)} |`,
    );
    goals.push({
      goal:
        `webhooks: commit → receiver, ${r.webhooks} webhook(s) at ${params.ratePerS} writes/s (measured; met = every pair delivered, in order)`,
      measured: `p50 ${lat(r.p50, 1)} ms, p99 ${lat(r.p99, 1)} ms (POST p50 ${f(r.postP50, 1)} ms)`,
      met: r.delivered === r.expected && r.outOfOrder === 0 && r.writeFailures === 0,
    });
  }
  const fewest = rows.latency[0];
  const most = rows.latency.at(-1);
  if (fewest && most && most.webhooks > fewest.webhooks) {
    lines.push(
      "",
      `Server CPU per delivery at ${params.ratePerS} writes/s: ${
        f((most.cpuMsPerCreate - fewest.cpuMsPerCreate) / (most.webhooks - fewest.webhooks), 3)
      } ms (the CPU per create with ${most.webhooks} webhooks − with ${fewest.webhooks}, ÷ ${
        most.webhooks - fewest.webhooks
      }).`,
    );
  }
  lines.push("");

  lines.push(
    `## webhooks: backlog drain after a receiver outage (1 webhook, ${params.ratePerS} writes/s throughout, 503 for ${params.outageS} s)`,
    "",
    "Waiting: events committed at recovery and not yet acknowledged. The retry waits as it was when the receiver came back " +
      "(exponential from WEBHOOK_RETRY_BASE_MS, jittered over the upper half), then one event at a time. " +
      "Drain rate = waiting ÷ (last waiting event's arrival − first attempt after recovery). Writes stop once the backlog has arrived.",
    "",
    "| variant | waiting | 503s (s after the outage began) | first attempt after recovery s | last waiting event after recovery s | drain s | drain events/s | caught up after recovery s |",
    "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const r of rows.drain) {
    lines.push(
      `| ${r.variant} | ${r.waiting} | ${r.failedAttemptsS.map((s) => f(s, 1)).join(", ")} | ${
        f(r.firstAttemptAfterS, 1)
      } | ${f(r.lastArrivedAfterS, 1)} | ${f(r.drainS, 2)} | ${f(r.drainPerS, 0)} | ${f(r.caughtUpAfterS, 1)} |`,
    );
    goals.push({
      goal:
        `webhooks: drain after a ${r.outageS} s outage, ${r.variant} (measured; met = every waiting event delivered, in order)`,
      measured: `${r.waiting} events; next attempt +${f(r.firstAttemptAfterS, 1)} s, last +${
        f(r.lastArrivedAfterS, 1)
      } s after recovery; ${f(r.drainPerS, 0)} events/s`,
      met: r.lastArrivedAfterS !== null && r.outOfOrder === 0,
    });
  }
  lines.push("");

  const [none, some] = rows.writes;
  lines.push(
    `## webhooks: the write path with ${params.webhooks} webhooks on every thread (create, ${params.threads} threads, ${params.connections} connections, ${params.durationS} s per round after ${params.warmupS} s warm-up)`,
    "",
    "Variants alternate round by round, each on a fresh server, in reverse order every other round (the disk slows as " +
      "the rounds' files pile up: a fixed order would charge that to the variant that always runs second); the webhooks' " +
      'receiver (in the bench process, answering 200) takes deliveries throughout. Median round of each; "paired" is the ' +
      "median over rounds of the variant's req/s over no webhooks' in the same round: the figure the goal judges. " +
      "Deliveries/s over warm-up + run; delivered = deliveries ÷ (events × webhooks) at the end of the load; the " +
      "receiver's CPU shares the 2 cores with the server.",
    "",
    "| variant | req/s (median) | rounds | create p50 ms | server CPU ms/req | vs no webhooks | paired | deliveries/s | delivered by the end | receiver CPU ms/delivery |",
    "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const r of rows.writes) {
    const hooks = r.webhooks > 0;
    lines.push(
      `| ${r.variant} | ${f(r.median, 0)} | ${r.rounds.map((n) => f(n, 0)).join(", ")} | ${f(r.p50, 2)} | ${
        f(r.cpuMs, 3)
      } | ${none ? fx(r.median / none.median) : "–"} | ${r.pairedRatio === undefined ? "–" : fx(r.pairedRatio)} | ${
        hooks ? f(r.deliveriesPerS, 0) : "–"
      } | ${hooks ? `${f(r.deliveredShare * 100, 0)}%` : "–"} | ${hooks ? f(r.receiverCpuMsPerDelivery, 3) : "–"} |`,
    );
  }
  if (none && some) {
    // What the server spends per delivery, if all its extra CPU per create went to deliveries.
    const extraCpuPerS = (some.cpuMs - none.cpuMs) * some.median;
    lines.push(
      "",
      `Server CPU per delivery, estimated (extra CPU per create × creates/s ÷ deliveries/s): ${
        f(extraCpuPerS / some.deliveriesPerS, 3)
      } ms.`,
    );
    goals.push({
      goal: `webhooks: the write path with ${params.webhooks} webhooks ≥ 0.95× without`,
      measured: `${fx(some.pairedRatio ?? Number.NaN)} paired (medians ${f(some.median, 0)} vs ${
        f(none.median, 0)
      } req/s)`,
      met: (some.pairedRatio ?? 0) >= 0.95,
    });
  }
  lines.push("");
  return { lines, goals };
}
