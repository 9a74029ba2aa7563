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
  variant: "before (no sequencer)" | "after (sequencer)";
  writers: {
    creates: number;
    perSecond: number;
    p50: number;
    p99: number;
    non2xx: number;
    s3PerCreate: number;
    libsqlPerCreate: number;
  };
  single: { p50: number };
  idle: { streams: number; seconds: number; storeRequestsPerStreamPerSecond: number };
  receive: { p50: number; createP50: number };
}

const TOKEN = "edge-bench";
const AUTH = { authorization: `Bearer ${TOKEN}` };

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
  return { p50: percentile(latencies, 50) };
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
