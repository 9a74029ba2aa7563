/**
 * Load process for request/response scenarios: autocannon against one server, each run
 * after a short warm-up run of its own. Latencies come from autocannon's per-response
 * `responseTime` (float ms, 2xx only), so sub-millisecond p50s are not rounded away.
 */
import autocannon from "autocannon";
import { summarize } from "../lib/stats.ts";
import { serveRequests } from "../lib/worker.ts";

export interface HttpRun {
  name: string;
  method: "GET" | "POST";
  /** Path with an optional `{thread}` placeholder, replaced round-robin over `threads` names. */
  path: string;
  /** Thread names `${threadPrefix}${0..threads-1}`; 1 = the same thread every time. */
  threads?: number;
  threadPrefix?: string;
  body?: string;
  headers?: Record<string, string>;
  connections: number;
  durationS: number;
  warmupS: number;
  /** Requests per second over all connections (autocannon's overallRate); default: as fast as answers come. */
  rate?: number;
}

/** One autocannon run: a warm-up (nothing recorded) or the measured run. */
export interface HttpConfig {
  baseUrl: string;
  run: HttpRun;
  phase: "warmup" | "measure";
}

export interface HttpResult {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  ok: number;
  non2xx: number;
  errors: number;
  statuses: Record<string, number>;
  durationS: number;
  /** Server CPU (user + system) per response during the measured run, filled in by run.ts. */
  cpuMsPerRequest?: number;
}

async function once(baseUrl: string, run: HttpRun, durationS: number, record: boolean): Promise<HttpResult> {
  let next = 0;
  const threads = Math.max(1, run.threads ?? 1);
  const prefix = run.threadPrefix ?? "t";
  const samples: number[] = [];
  const statuses: Record<string, number> = {};
  let finish!: (result: autocannon.Result) => void;
  let fail!: (error: unknown) => void;
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  const instance = autocannon({
    url: baseUrl,
    connections: run.connections,
    duration: durationS,
    // 127.0.0.1 only; one request per connection at a time.
    pipelining: 1,
    timeout: 10,
    ...(run.rate ? { overallRate: run.rate } : {}),
    requests: [
      {
        method: run.method,
        path: run.path.replace("{thread}", `${prefix}0`),
        headers: { ...(run.body ? { "content-type": "application/json" } : {}), ...(run.headers ?? {}) },
        ...(run.body ? { body: run.body } : {}),
        setupRequest: (req) => {
          req.path = run.path.replace("{thread}", `${prefix}${next++ % threads}`);
          return req;
        },
      },
    ],
  }, (error: unknown, result: autocannon.Result) => (error ? fail(error) : finish(result)));
  instance.on("response", (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
    if (record && statusCode >= 200 && statusCode < 300) samples.push(responseTime);
  });
  const result = await done;
  const ok = samples.length;
  const elapsedS = result.duration || durationS;
  const latency = summarize(samples);
  return {
    name: run.name,
    rps: ok / elapsedS,
    p50: latency.p50,
    p99: latency.p99,
    ok,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    statuses,
    durationS: elapsedS,
  };
}

serveRequests<HttpConfig, HttpResult>((config) =>
  config.phase === "warmup"
    ? once(config.baseUrl, config.run, config.run.warmupS, false)
    : once(config.baseUrl, config.run, config.run.durationS, true)
);
