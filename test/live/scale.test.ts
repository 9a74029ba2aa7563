/**
 * Scale and hygiene of the live path, on one in-process server over real loopback HTTP:
 * - 500 concurrent subscribers on one thread share ONE feed and each receive every
 *   event of a burst of concurrent writes, in order;
 * - opening and aborting 1,000 streams (at every stage: before the response, after the
 *   headers, while waiting, after events) leaves no leaked handles: the process's
 *   active resources by type and the FeedHub size go back to their baseline;
 * - a subscriber that never reads its body (a raw socket, paused) does not stop the
 *   others, and is itself only delayed, not corrupted.
 */
import { request as httpRequest } from "node:http";
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Artifact } from "../../src/model/artifact.ts";
import { type LiveApp, newThreadId, startLiveApp } from "../support/live-server.ts";
import { SpecSseParser, SseConnection } from "../support/sse.ts";
import { waitFor } from "../support/wait.ts";

const BIG_PAYLOAD_BYTES = 1_000_000;
let app: LiveApp;

beforeAll(async () => {
  app = await startLiveApp({ env: { MAX_PAYLOAD_BYTES: String(BIG_PAYLOAD_BYTES + 1024) } });
});
afterAll(() => app?.stop());

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

/** Writes through the in-memory app (no sockets), so writes leave no keep-alive connections behind. */
async function createInMemory(threadId: string, payload: unknown): Promise<Artifact> {
  const r = await app.request("POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "note", payload });
  expect(r.status, r.text).toBe(201);
  return r.json.artifact;
}

/** Opens streams `count` at a time, so the test never holds more sockets than it needs. */
async function inBatches<T>(items: T[], size: number, run: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(run));
}

describe("many subscribers", () => {
  it("500 concurrent subscribers on one thread share one feed and each receive a burst in order", async () => {
    const threadId = newThreadId("fanout");
    const streams: SseConnection[] = [];
    try {
      await inBatches(range(500), 100, async () => {
        const stream = await SseConnection.open(`${app.url}/v1/threads/${threadId}/events`);
        streams.push(stream);
        expect(stream.response.status).toBe(200);
        await stream.until((c) => c.parser.retries.length > 0, "retry");
      });
      expect(streams).toHaveLength(500);
      expect(app.feeds.size).toBe(1);

      const burst = 25;
      const written = await Promise.all(range(burst).map((n) => createInMemory(threadId, { n })));
      expect(written.map((a) => a.seq).sort((x, y) => x - y)).toEqual(range(burst));
      const bySeq = new Map(written.map((a) => [a.seq, a.id]));
      await Promise.all(streams.map((s) => s.untilSeq(burst, { timeoutMs: 60_000 })));
      for (const stream of streams) {
        expect(stream.seqs).toEqual(range(burst));
        expect(stream.events.map((e) => e.id)).toEqual(range(burst).map(String));
        expect(stream.events.map((e) => e.event.artifact.id)).toEqual(range(burst).map((s) => bySeq.get(s)));
      }
    } finally {
      await Promise.all(streams.map((s) => s.close()));
    }
    await waitFor("every feed to be released", () => app.feeds.size === 0);
  });
});

describe("resource hygiene", () => {
  function resourceCounts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const type of process.getActiveResourcesInfo()) counts.set(type, (counts.get(type) ?? 0) + 1);
    return counts;
  }
  const excess = (baseline: Map<string, number>) =>
    [...resourceCounts()].filter(([type, n]) => n > (baseline.get(type) ?? 0)).map(([type, n]) =>
      `${type}: ${n} > ${baseline.get(type) ?? 0}`
    );

  /**
   * One stream over node:http without an agent (a socket of its own, nothing pooled),
   * torn down by the client at `stage`: 0 before the response, 1 after the headers,
   * 2 after `retry:`, 3 after the first event.
   */
  function churnOne(url: string, stage: number, onEstablished: () => void = () => {}): Promise<{ sawEvent: boolean }> {
    return new Promise((resolve, reject) => {
      const request = httpRequest(url, { agent: false, headers: { accept: "text/event-stream" } });
      const parser = new SpecSseParser();
      let settled = false;
      const finish = (sawEvent: boolean) => {
        if (settled) return;
        settled = true;
        request.destroy();
        resolve({ sawEvent });
      };
      request.on("error", (error) => {
        if (!settled) reject(error);
      });
      request.on("response", (response) => {
        if (response.statusCode !== 200) return reject(new Error(`status ${response.statusCode}`));
        if (stage === 1) return finish(false);
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          parser.push(chunk);
          if (stage === 2 && parser.retries.length > 0) {
            onEstablished();
            finish(false);
          }
          if (stage === 3 && parser.events.length > 0) finish(true);
        });
      });
      request.end();
      if (stage === 0) setImmediate(() => finish(false));
    });
  }

  it("opening and aborting 1,000 streams leaves no active handles and no feeds behind", async () => {
    // Threads 0-4 have an event (stage 3 waits for it); 5-9 do not exist yet.
    const threads = range(10).map(() => newThreadId("churn"));
    for (const threadId of threads.slice(0, 5)) await createInMemory(threadId, { seeded: true });
    const urlOf = (n: number) => `${app.url}/v1/threads/${threads[n % threads.length]}/events`;
    // Warm up lazily created resources (the stream path, the log reads) before the baseline.
    await churnOne(urlOf(0), 3);
    await waitFor("the warm-up feed to be released", () => app.feeds.size === 0);
    await waitFor("warm-up sockets to close", () => !resourceCounts().has("TCPSocketWrap"));
    const baseline = resourceCounts();
    expect(baseline.get("TCPServerWrap")).toBeGreaterThanOrEqual(1);

    let peakSockets = 0;
    let peakFeeds = 0;
    let delivered = 0;
    await inBatches(range(1000), 100, async (n) => {
      const stage = n % 4 === 3 && n % threads.length >= 5 ? 2 : n % 4;
      // Sampled while a stream is established, to show the measures see open streams.
      const sample = () => {
        peakSockets = Math.max(peakSockets, resourceCounts().get("TCPSocketWrap") ?? 0);
        peakFeeds = Math.max(peakFeeds, app.feeds.size);
      };
      if ((await churnOne(urlOf(n), stage, sample)).sawEvent) delivered++;
    });
    // The measures do see open streams (so they would see leaked ones): both ends of each.
    expect(peakSockets).toBeGreaterThanOrEqual(2);
    expect(peakFeeds).toBeGreaterThan(0);
    expect(peakFeeds).toBeLessThanOrEqual(threads.length);
    expect(delivered).toBe(range(1000).filter((n) => n % 4 === 3 && n % threads.length < 5).length);

    await waitFor("every feed to be released", () => app.feeds.size === 0);
    await waitFor("active resources to return to baseline", () => excess(baseline).length === 0).catch((error) => {
      throw new Error(`${(error as Error).message}: ${excess(baseline).join(", ")}`);
    });
  });
});

describe("slow readers", () => {
  /** A raw HTTP client that sends the request and then never reads the response. */
  async function stalledSubscriber(threadId: string): Promise<Socket> {
    const { port } = new URL(app.url);
    const socket = connect({ host: "127.0.0.1", port: Number(port) });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    socket.pause();
    socket.write(`GET /v1/threads/${threadId}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`);
    return socket;
  }

  it("a subscriber that never reads does not stop others; it is only delayed", async () => {
    const threadId = newThreadId("slow");
    // The server's end of each connection, to see the stalled stream's backpressure.
    const serverSockets: Socket[] = [];
    const track = (socket: Socket) => serverSockets.push(socket);
    app.server.on("connection", track);
    const stalled = await stalledSubscriber(threadId);
    const readers = await Promise.all(
      range(3).map(() => SseConnection.open(`${app.url}/v1/threads/${threadId}/events`)),
    );
    try {
      await Promise.all(readers.map((r) => r.until((c) => c.parser.retries.length > 0, "retry")));
      const stalledOnServer = serverSockets.find((s) => s.remotePort === stalled.localPort);
      expect(stalledOnServer).toBeDefined();
      // Big events until the stalled stream's socket is backed up on the server (kernel buffers full).
      const big = "x".repeat(BIG_PAYLOAD_BYTES - 64);
      const written: Artifact[] = [];
      for (let n = 1; n <= 60 && !stalledOnServer?.writableNeedDrain; n++) {
        written.push(await createInMemory(threadId, { n, big }));
      }
      expect(stalledOnServer?.writableNeedDrain).toBe(true);
      // Two more events after the stalled stream is blocked.
      for (const n of [61, 62]) written.push(await createInMemory(threadId, { n, big }));
      const count = written.length;
      await Promise.all(readers.map((r) => r.untilSeq(count, { timeoutMs: 60_000 })));
      for (const reader of readers) {
        expect(reader.seqs).toEqual(range(count));
        expect(reader.events.map((e) => e.event.artifact.id)).toEqual(written.map((a) => a.id));
      }
      // The stalled one really was stalled: it has taken in a small part of the stream at most.
      expect(stalled.bytesRead).toBeLessThan((count * BIG_PAYLOAD_BYTES) / 2);

      // Once it reads, it gets every event, in order, intact.
      const parser = new SpecSseParser();
      const updates = () => parser.events.filter((e) => e.type === "artifact-updated");
      const got = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`stalled reader got ${updates().length} of ${count} events`)),
          60_000,
        );
        stalled.setEncoding("utf8");
        stalled.on("data", (chunk: string) => {
          parser.push(chunk);
          if (updates().length >= count) {
            clearTimeout(timer);
            resolve();
          }
        });
        stalled.resume();
      });
      await got;
      expect(updates().map((e) => e.lastEventId)).toEqual(range(count).map(String));
      expect(updates().map((e) => JSON.parse(e.data).artifact.id)).toEqual(written.map((a) => a.id));
    } finally {
      app.server.off("connection", track);
      stalled.destroy();
      await Promise.all(readers.map((r) => r.close()));
    }
    await waitFor("every feed to be released", () => app.feeds.size === 0);
  });
});
