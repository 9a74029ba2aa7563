/**
 * Slow stream readers (`--only=slow`): what event streams whose clients stopped reading
 * cost our Node server. 200 streams on one thread, each a raw socket that sends its GET
 * and then reads nothing, then 20 MB of events written to that thread (334 creates of
 * ~60 KB); the server's VmRSS before the streams, with them idle, and after the writes.
 * SSE_STALL_MS is a minute, so every stream is still open and stalled when measured
 * (the gauge is checked): what is measured is what a stalled stream holds, not its end.
 *
 * Variants, each on a fresh server: 200 single-thread streams (they share each event's
 * encoded frame, so Node's socket buffers hold references to the same bytes); 200
 * `GET /v1/events?threads=slow-0` streams (each encodes its own frames: nothing shared,
 * the per-stream bound in full); one stalled stream (the thread's feed buffer and the
 * write path, without the other 199); and the same writes with no stream (what the writes
 * alone leave: the thread's state, garbage not yet collected, libSQL's page cache).
 *
 * VmRSS is read as it is, and again after a full garbage collection (asked of the
 * server's inspector: it runs with `--inspect` on a free port), which takes out what
 * merely waits to be collected.
 */
import { connect, type Socket } from "node:net";
import { rssBytes, type ServerProcess, sleep } from "./lib/process.ts";

export interface SlowParams {
  streams: number;
  creates: number;
  /** Characters of filler per payload (~bytes: ASCII). */
  payloadChars: number;
  /** SSE_STALL_MS of the server: longer than the run, so no stream is ended while measured. */
  stallMs: number;
  /** Wait after the last write before reading RSS (ms). */
  settleMs: number;
}

export const SLOW_PARAMS: Omit<SlowParams, "settleMs"> = {
  streams: 200,
  creates: 334,
  payloadChars: 60_000,
  stallMs: 60_000,
};

export interface SlowRow {
  variant: string;
  kind: "thread" | "many";
  /** Streams opened (raw sockets that never read). */
  streams: number;
  /** `artifacts_sse_streams{kind}` when RSS was read after the writes. */
  openAtMeasure: number;
  /** `artifacts_sse_stalled_total{kind}` then (0: none was ended yet). */
  stalledAtMeasure: number;
  bytesWritten: number;
  idle: number;
  withStreams: number;
  afterWrites: number;
  /** VmRSS after a full garbage collection, before the streams and after the writes. */
  idleGc: number;
  afterWritesGc: number;
  writeSeconds: number;
}

export interface SlowDeps {
  /** Runs `body` against a fresh server of ours (its own data folder) with `env` on top. */
  withOurs: <T>(name: string, env: Record<string, string>, body: (server: ServerProcess) => Promise<T>) => Promise<T>;
  log: (message: string) => void;
}

const THREAD = "slow-0";

/** One GET on a socket paused before it connects: not one byte of the answer is ever read. */
function pausedStream(baseUrl: string, path: string): Socket {
  const url = new URL(baseUrl);
  const socket = connect({ host: url.hostname, port: Number(url.port) });
  socket.pause();
  socket.on("error", () => {});
  socket.write(`GET ${path} HTTP/1.1\r\nhost: ${url.host}\r\naccept: text/event-stream\r\n\r\n`);
  return socket;
}

/** A sample of `/metrics` (0 when absent). */
async function metric(baseUrl: string, name: string, kind: string): Promise<number> {
  const text = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(10_000) }).then((r) => r.text());
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes(`kind="${kind}"`));
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
}

/** Runs a full garbage collection in the server through its inspector (`ws://…` it printed at start). */
async function collectGarbage(inspectorUrl: string): Promise<void> {
  const ws = new WebSocket(inspectorUrl);
  try {
    await new Promise((resolve, reject) => {
      ws.addEventListener("open", resolve, { once: true });
      ws.addEventListener("error", reject, { once: true });
    });
    const collected = new Promise<void>((resolve) => {
      ws.addEventListener("message", (event) => {
        if ((JSON.parse(String(event.data)) as { id?: number }).id === 1) resolve();
      });
    });
    ws.send(JSON.stringify({ id: 1, method: "HeapProfiler.collectGarbage" }));
    await Promise.race([collected, sleep(30_000).then(() => Promise.reject(new Error("slow: no GC answer")))]);
  } finally {
    ws.close();
  }
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`slow: timed out waiting for ${what}`);
    await sleep(50);
  }
}

export async function benchSlowReaders(params: SlowParams, deps: SlowDeps): Promise<SlowRow[]> {
  const rows: SlowRow[] = [];
  const body = (i: number) =>
    JSON.stringify({ artifactType: "bench.slow", payload: { i, blob: "x".repeat(params.payloadChars) } });
  const env = {
    SSE_STALL_MS: String(params.stallMs),
    SSE_MAX_LIFETIME_MS: String(10 * params.stallMs),
    NODE_OPTIONS: "--inspect=127.0.0.1:0",
  };
  const variants = [
    { variant: `${params.streams} stalled streams`, kind: "thread", streams: params.streams },
    { variant: `${params.streams} stalled many-thread streams`, kind: "many", streams: params.streams },
    { variant: "1 stalled stream", kind: "thread", streams: 1 },
    { variant: "no stream (the writes alone)", kind: "thread", streams: 0 },
  ] as const;
  const paths = { thread: `/v1/threads/${THREAD}/events`, many: `/v1/events?threads=${THREAD}` };
  for (const { variant, kind, streams } of variants) {
    deps.log(`slow: ${variant}`);
    rows.push(
      await deps.withOurs(`slow-${kind}-${streams}`, env, async (s) => {
        const inspector = /ws:\/\/127\.0\.0\.1:\d+\/[\w-]+/.exec(s.output())?.[0];
        if (!inspector) throw new Error(`slow: the server printed no inspector URL:\n${s.output()}`);
        const post = async (thread: string, i: number) => {
          const r = await fetch(`${s.url}/v1/threads/${thread}/artifacts`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: body(i),
            signal: AbortSignal.timeout(10_000),
          });
          await r.arrayBuffer();
          if (r.status !== 201) throw new Error(`slow: create answered ${r.status}`);
        };
        // Warm the write path (on another thread: the streams start at seq 0 of theirs).
        for (let i = 0; i < 5; i++) await post("slow-warm", i);
        await sleep(300);
        const idle = rssBytes(s.pid);
        await collectGarbage(inspector);
        const idleGc = rssBytes(s.pid);
        const sockets = Array.from({ length: streams }, () => pausedStream(s.url, paths[kind]));
        try {
          await until(
            `${streams} streams open`,
            async () => (await metric(s.url, "artifacts_sse_streams", kind)) === streams,
          );
          await sleep(params.settleMs);
          const withStreams = rssBytes(s.pid);
          const started = performance.now();
          for (let i = 0; i < params.creates; i++) await post(THREAD, i);
          const writeSeconds = (performance.now() - started) / 1000;
          await sleep(params.settleMs);
          const afterWrites = rssBytes(s.pid);
          await collectGarbage(inspector);
          const afterWritesGc = rssBytes(s.pid);
          return {
            variant,
            kind,
            streams,
            openAtMeasure: await metric(s.url, "artifacts_sse_streams", kind),
            stalledAtMeasure: await metric(s.url, "artifacts_sse_stalled_total", kind),
            bytesWritten: params.creates * body(0).length,
            idle,
            withStreams,
            afterWrites,
            idleGc,
            afterWritesGc,
            writeSeconds,
          };
        } finally {
          for (const socket of sockets) socket.destroy();
        }
      }),
    );
  }
  return rows;
}

const MiB = 1024 * 1024;
const f = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "–");

/** The section of latest.md, and its goal. */
export function reportSlow(
  rows: SlowRow[],
  params: SlowParams,
): { lines: string[]; goals: Array<{ goal: string; measured: string; met: boolean }> } {
  const above = (r: SlowRow) => r.afterWrites - r.idle;
  const aboveGc = (r: SlowRow) => r.afterWritesGc - r.idleGc;
  const stalled = rows.find((r) => r.kind === "thread" && r.streams === params.streams);
  const one = rows.find((r) => r.streams === 1);
  const none = rows.find((r) => r.streams === 0);
  const mb = (rows[0]?.bytesWritten ?? 0) / 1e6;
  const lines = [
    `## slow stream readers: ${params.streams} streams whose clients stopped reading, ${params.creates} creates of ~${
      Math.round(params.payloadChars / 1000)
    } KB (${f(mb)} MB) on the thread they follow`,
    "",
    `Each stream is a raw socket that sends its GET and never reads. SSE_STALL_MS=${params.stallMs}: every stream is still open and stalled when VmRSS is read (${
      params.settleMs / 1000
    } s after the last write; "open" is the gauge then), so this is what a stalled stream holds before it is ended. ` +
    "Above idle: after the writes minus before the streams opened; again after a full GC each time (through the server's inspector). " +
    "Single-thread streams share each event's encoded frame; many-thread streams (`/v1/events?threads=slow-0`) each encode their own. " +
    "One stalled stream already brings the thread's feed buffer (its last 256 events, each as data and as frame: ~30 MB at 60 KB); " +
    "no stream: the writes alone. Per stream: above idle after GC minus the one-stream variant's, over the other streams.",
    "",
    "| variant | open at measure | stalled (ended) | idle MiB | with idle streams MiB | after writes MiB | above idle MiB | above idle after GC MiB | per stream KiB | writes s |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of rows) {
    const perStream = one && r.streams > 1 ? f((aboveGc(r) - aboveGc(one)) / 1024 / (r.streams - 1), 0) : "–";
    lines.push(
      `| ${r.variant} | ${r.openAtMeasure} | ${r.stalledAtMeasure} | ${f(r.idle / MiB)} | ${f(r.withStreams / MiB)} | ${
        f(r.afterWrites / MiB)
      } | ${f(above(r) / MiB)} | ${f(aboveGc(r) / MiB)} | ${perStream} | ${f(r.writeSeconds)} |`,
    );
  }
  lines.push("");
  const goals = [];
  if (stalled) {
    const context = [
      `${f(aboveGc(stalled) / MiB)} MiB after a full GC`,
      one ? `1 stalled stream: ${f(above(one) / MiB)} / ${f(aboveGc(one) / MiB)} MiB` : "",
      none ? `no stream: ${f(above(none) / MiB)} / ${f(aboveGc(none) / MiB)} MiB` : "",
    ].filter(Boolean).join("; ");
    goals.push({
      goal: `RSS above idle with ${params.streams} stalled streams after ${f(mb, 0)} MB of events ≤ 50 MiB`,
      measured: `${f(above(stalled) / MiB)} MiB (${context})`,
      met: above(stalled) <= 50 * MiB && stalled.openAtMeasure === params.streams,
    });
    // The same after a full GC: what is held, not what merely waits to be collected.
    goals.push({
      goal: `the same, after a full GC, ≤ 50 MiB`,
      measured: `${f(aboveGc(stalled) / MiB)} MiB`,
      met: aboveGc(stalled) <= 50 * MiB && stalled.openAtMeasure === params.streams,
    });
  }
  return { lines, goals };
}
