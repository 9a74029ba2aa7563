/**
 * Many threads on one stream (`GET /v1/events`), against our Node server:
 * - write-to-receive latency of 1,000 subscriptions spread over 100 threads (10 per
 *   thread), as 1,000 single-thread connections and as 10 connections of 100 threads
 *   each: the same writes, the same (subscription, write) pairs;
 * - resident memory of 1,000 idle multiplexed streams of 10 threads each (10,000
 *   subscriptions over 100 threads) and of 100 streams of 100 threads.
 */
import type { SseResult } from "./load/sse.ts";
import { type LoadWorker, rssBytes, type ServerProcess, sleep } from "./lib/process.ts";

export interface ManyParams {
  writes: number;
  warmupWrites: number;
  ratePerS: number;
  drainMs: number;
  settleMs: number;
}

export interface ManyLatencyRow {
  variant: string;
  connections: number;
  threadsPerConnection: number;
  result: SseResult;
}

export interface ManyMemoryRow {
  variant: string;
  streams: number;
  threadsPerStream: number;
  open: number;
  baseline: number;
  withStreams: number;
}

export interface ManyResult {
  latency: ManyLatencyRow[];
  memory: ManyMemoryRow[];
}

const THREADS = 100;
const PER_THREAD = 10;

export interface ManyDeps {
  sse: LoadWorker;
  idle: LoadWorker;
  /** Runs `body` against a fresh server of ours (its own data folder). */
  withOurs: <T>(name: string, body: (server: ServerProcess) => Promise<T>) => Promise<T>;
  log: (message: string) => void;
}

export async function benchMany(params: ManyParams, deps: ManyDeps): Promise<ManyResult> {
  const latency: ManyLatencyRow[] = [];
  const timeout = ((params.writes + params.warmupWrites) / params.ratePerS) * 1000 + 120_000;
  const variants = [
    { variant: "1,000 single-thread connections", connections: THREADS * PER_THREAD, threadsPerConnection: 1 },
    { variant: "10 connections × 100 threads", connections: PER_THREAD, threadsPerConnection: THREADS },
  ];
  for (const v of variants) {
    deps.log(`many: ${v.variant}`);
    const result = await deps.withOurs(`many-${v.threadsPerConnection}`, (s) => {
      const thread = (t: number) => `many-${t}`;
      const streamUrls = v.threadsPerConnection === 1
        ? Array.from({ length: v.connections }, (_, i) => `${s.url}/v1/threads/${thread(i % THREADS)}/events`)
        : new Array<string>(v.connections).fill(
          `${s.url}/v1/events?threads=${Array.from({ length: THREADS }, (_, t) => thread(t)).join(",")}`,
        );
      return deps.sse.request<SseResult>({
        streamUrls,
        writeUrls: Array.from({ length: THREADS }, (_, t) => `${s.url}/v1/threads/${thread(t)}/artifacts`),
        perWrite: PER_THREAD,
        writes: params.writes,
        warmupWrites: params.warmupWrites,
        ratePerS: params.ratePerS,
        drainMs: params.drainMs,
      }, timeout);
    });
    latency.push({ ...v, result });
  }

  const memory: ManyMemoryRow[] = [];
  for (const m of [{ streams: 1000, threadsPerStream: 10 }, { streams: 100, threadsPerStream: 100 }]) {
    const variant = `${m.streams.toLocaleString("en-US")} streams × ${m.threadsPerStream} threads`;
    deps.log(`many: memory, ${variant}`);
    memory.push(
      await deps.withOurs(`many-rss-${m.threadsPerStream}`, async (s) => {
        await fetch(`${s.url}/v1/threads/warm/artifacts`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ artifactType: "warm", payload: 0 }),
        }).then((r) => r.arrayBuffer());
        await sleep(300);
        const baseline = rssBytes(s.pid);
        // Stream i follows threads i*k .. i*k+k-1 (mod 100): every thread is followed alike.
        const urls = Array.from(
          { length: m.streams },
          (_, i) =>
            `${s.url}/v1/events?threads=${
              Array.from({ length: m.threadsPerStream }, (_, k) => `rss-${(i * m.threadsPerStream + k) % THREADS}`)
                .join(",")
            }`,
        );
        const opened = await deps.idle.request<{ open: number }>({ op: "open", urls }, 120_000);
        await sleep(params.settleMs);
        const withStreams = rssBytes(s.pid);
        await deps.idle.request({ op: "close" }, 30_000);
        return { variant, ...m, open: opened.open, baseline, withStreams };
      }),
    );
  }
  return { latency, memory };
}

const MiB = 1024 * 1024;
const f = (n: number | null, digits = 1) => (n === null ? "lost" : Number.isFinite(n) ? n.toFixed(digits) : "–");

/** The section of latest.md, and its goals. */
export function reportMany(
  result: ManyResult,
  params: ManyParams,
): { lines: string[]; goals: Array<{ goal: string; measured: string; met: boolean }> } {
  const lines = [
    `## many threads on one stream (GET /v1/events): 1,000 subscriptions over 100 threads, ${params.writes} writes of ~1 KiB at ${params.ratePerS}/s spread over the threads`,
    "",
    "Each write reaches 10 subscriptions either way; latency as in the SSE section, over every (subscription, write) pair.",
    "",
    "| variant | connections | p50 ms | p99 ms | max ms | delivered | POST p50 ms |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const row of result.latency) {
    const r = row.result;
    lines.push(
      `| ${row.variant} | ${row.connections} | ${f(r.p50, 2)} | ${f(r.p99, 2)} | ${
        f(r.max, 1)
      } | ${r.delivered}/${r.expected} | ${f(r.writeP50, 2)} |`,
    );
  }
  lines.push(
    "",
    `Resident memory of idle multiplexed streams (VmRSS, ${params.settleMs / 1000} s after the last opened):`,
    "",
    "| streams | threads per stream | subscriptions | baseline MiB | with streams MiB | delta MiB | per stream KiB | per subscription KiB |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const row of result.memory) {
    const delta = row.withStreams - row.baseline;
    lines.push(
      `| ${row.open} | ${row.threadsPerStream} | ${row.open * row.threadsPerStream} | ${f(row.baseline / MiB)} | ${
        f(row.withStreams / MiB)
      } | ${f(delta / MiB)} | ${f(delta / 1024 / Math.max(1, row.open))} | ${
        f(delta / 1024 / Math.max(1, row.open * row.threadsPerStream), 2)
      } |`,
    );
  }
  lines.push("");
  const goals = [];
  const [single, multi] = result.latency;
  if (single && multi) {
    const ms = (n: number | null) => (n === null ? Number.POSITIVE_INFINITY : n);
    const ratio = ms(multi.result.p99) / ms(single.result.p99);
    goals.push({
      goal: "SSE p99, 1,000 subscriptions over 100 threads: 100-thread connections ≤ 1.2× single-thread connections",
      measured: `${f(multi.result.p99, 2)} ms vs ${f(single.result.p99, 2)} ms (${f(ratio, 2)}×)`,
      met: ratio <= 1.2,
    });
  }
  const idle = result.memory.find((m) => m.streams === 1000);
  if (idle) {
    goals.push({
      goal: "RSS delta with 1,000 idle multiplexed streams (10 threads each) ≤ 100 MiB",
      measured: `${f((idle.withStreams - idle.baseline) / MiB)} MiB`,
      met: idle.withStreams - idle.baseline <= 100 * MiB && idle.open === idle.streams,
    });
  }
  return { lines, goals };
}
