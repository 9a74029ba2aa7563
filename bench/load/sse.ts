/**
 * Load process for write-to-receive latency: opens one SSE connection per `streamUrls`
 * entry (one thread's stream, or several threads' on `/v1/events`), then sends paced
 * POSTs, write i to `writeUrls[i % length]`, (fixed rate, fire-and-forget so a slow write does not slow the
 * pace) whose payload carries `sentAt = performance.now()` taken just before the request.
 * Latency = the monotonic receive time of the chunk holding the event − sentAt, for every
 * (subscriber, write) pair; both clocks are this process's.
 */
import { httpPost } from "../lib/http-post.ts";
import { timedBody, timedFields } from "../lib/payload.ts";
import { openMany } from "../lib/sse-client.ts";
import { summarize } from "../lib/stats.ts";
import { serveRequests } from "../lib/worker.ts";

export interface SseConfig {
  /** One connection per entry. */
  streamUrls: string[];
  /** Write i goes to entry i % length (one thread each). */
  writeUrls: string[];
  /** How many connections each write's event reaches (the expected (connection, write) pairs per write). */
  perWrite: number;
  /** Writes measured, after `warmupWrites` unmeasured ones at the same pace. */
  writes: number;
  warmupWrites: number;
  ratePerS: number;
  /** After the last write, how long at most to wait for stragglers (ms); undelivered events are reported. */
  drainMs: number;
}

export interface SseResult {
  subscribers: number;
  writes: number;
  expected: number;
  delivered: number;
  /** Over every expected (subscriber, write) pair; null when the rank falls on an event that never arrived. */
  p50: number | null;
  p99: number | null;
  max: number | null;
  writeErrors: number;
  writeP50: number;
  writeP99: number;
  openMs: number;
}

function post(url: string, body: string): Promise<number> {
  return httpPost(url, { "content-type": "application/json" }, body, { timeoutMs: 10_000 }).catch(() => 0);
}

serveRequests<SseConfig, SseResult>(async (config) => {
  const total = config.warmupWrites + config.writes;
  const connections = config.streamUrls.length;
  const seen = new Uint8Array(connections * total);
  const latencies: number[] = [];
  let delivered = 0;
  let allDelivered: (() => void) | undefined;
  const expected = config.perWrite * config.writes;

  const openStart = performance.now();
  const streams = await openMany(connections, (i) => config.streamUrls[i] as string, (index, data, receivedAt) => {
    const fields = timedFields(data);
    if (!fields || fields.i >= total) return;
    const slot = index * total + fields.i;
    if (seen[slot]) return;
    seen[slot] = 1;
    if (fields.i < config.warmupWrites) return;
    latencies.push(receivedAt - fields.sentAt);
    if (++delivered === expected) allDelivered?.();
  });
  const openMs = performance.now() - openStart;

  try {
    const writeTimes: number[] = [];
    let writeErrors = 0;
    let answered = 0;
    const pending: Promise<void>[] = [];
    const interval = 1000 / config.ratePerS;
    const start = performance.now();
    for (let i = 0; i < total; i++) {
      const wait = start + i * interval - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const sentAt = performance.now();
      pending.push(
        post(config.writeUrls[i % config.writeUrls.length] as string, timedBody(i, sentAt)).then((status) => {
          answered++;
          if (status < 200 || status >= 300) writeErrors++;
          else if (i >= config.warmupWrites) writeTimes.push(performance.now() - sentAt);
        }),
      );
    }
    // Wait for every event to arrive and every POST to answer, but at most drainMs after
    // the last send: a server that falls behind is measured, not waited for.
    await Promise.race([
      Promise.all([
        Promise.all(pending),
        delivered < expected ? new Promise<void>((resolve) => (allDelivered = resolve)) : Promise.resolve(),
      ]),
      new Promise((resolve) => setTimeout(resolve, config.drainMs)),
    ]);
    // An event that never arrived counts as slower than any that did: percentiles run over
    // every expected (subscriber, write) pair, and one that lands on a lost event is null.
    const lost = expected - delivered;
    const latency = summarize(
      lost > 0 ? latencies.concat(new Array<number>(lost).fill(Number.POSITIVE_INFINITY)) : latencies,
    );
    const finite = (n: number) => (Number.isFinite(n) ? n : null);
    const write = summarize(writeTimes);
    return {
      subscribers: config.perWrite,
      writes: config.writes,
      expected,
      delivered,
      p50: finite(latency.p50),
      p99: finite(latency.p99),
      max: finite(latency.max),
      // POSTs that failed, or had not answered by the end of the drain.
      writeErrors: writeErrors + (total - answered),
      writeP50: write.p50,
      writeP99: write.p99,
      openMs,
    };
  } finally {
    for (const stream of streams) stream.close();
  }
});
