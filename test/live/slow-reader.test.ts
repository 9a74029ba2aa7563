/**
 * Slow stream readers are bounded: a stream whose client stops reading is ended once a
 * write has waited `SSE_STALL_MS` for it (its connection dropped, its feed and gauge
 * freed, `artifacts_sse_stalled_total` counted), the client resumes from the events it
 * did get, and nothing of the other streams of the same threads is delayed or lost.
 *
 * - Against a real Node server process: the stalled client is a raw socket that sends
 *   its GET and never reads (until the test resumes it, to see what it got), while a
 *   healthy stream on the same thread(s) reads every event; for `GET
 *   /v1/threads/{id}/events` and `GET /v1/events`.
 * - In-process, on `streamThreadEvents` / `streamManyThreadEvents` with a body nobody
 *   reads: the lifetime ends a waiting write, a client that goes away ends it without
 *   counting a stall, and a many-threads stream whose write stalls mid-batch still frees
 *   every feed.
 */
import { connect, type Socket } from "node:net";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streamManyThreadEvents, type StreamOptions, streamThreadEvents } from "../../src/http/sse.ts";
import { type EventReader, FeedHub } from "../../src/live/feed.ts";
import { InProcessNotifier } from "../../src/live/notifier.ts";
import { type Metrics, noMetrics, type StreamKind } from "../../src/model/metrics.ts";
import type { ArtifactEvent, LogEvent } from "../../src/model/patch.ts";
import { http, useCluster } from "../support/cluster.ts";
import { newThreadId } from "../support/live-server.ts";
import { scrape } from "../support/prometheus.ts";
import type { ServerProcess } from "../support/server-process.ts";
import { SpecSseParser, SseConnection } from "../support/sse.ts";
import { waitFor } from "../support/wait.ts";

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

/**
 * An HTTP/1.1 client that sends its GET and then reads nothing: paused before it even
 * connects, so not one byte leaves the kernel's receive buffer until `readToEnd`.
 */
class PausedClient {
  readonly #socket: Socket;
  readonly #closed: Promise<void>;
  readonly #chunks: Buffer[] = [];
  error: Error | undefined;

  constructor(baseUrl: string, path: string, headers: Record<string, string> = {}) {
    const url = new URL(baseUrl);
    this.#socket = connect({ host: url.hostname, port: Number(url.port) });
    this.#socket.pause();
    this.#closed = new Promise((resolve) => this.#socket.once("close", () => resolve()));
    this.#socket.on("error", (error) => {
      this.error = error;
    });
    const lines = Object.entries({ host: url.host, accept: "text/event-stream", ...headers })
      .map(([name, value]) => `${name}: ${value}\r\n`).join("");
    this.#socket.write(`GET ${path} HTTP/1.1\r\n${lines}\r\n`);
  }

  /** Reads again, and resolves with everything the server sent once the connection has ended. */
  async readToEnd(): Promise<Buffer> {
    this.#socket.on("data", (chunk: Buffer) => this.#chunks.push(chunk));
    this.#socket.resume();
    await this.#closed;
    return Buffer.concat(this.#chunks);
  }

  destroy(): void {
    this.#socket.destroy();
  }
}

/** A chunked HTTP/1.1 response as far as it arrived: status line, body, and whether its last chunk came. */
function dechunk(raw: Buffer): { status: string; body: string; complete: boolean } {
  const headEnd = raw.indexOf("\r\n\r\n");
  expect(headEnd).toBeGreaterThan(0);
  const head = raw.subarray(0, headEnd).toString("latin1");
  expect(head).toMatch(/\r\ntransfer-encoding: chunked\r\n/i);
  const parts: Buffer[] = [];
  let at = headEnd + 4;
  let complete = false;
  for (;;) {
    const lineEnd = raw.indexOf("\r\n", at);
    if (lineEnd < 0) break;
    const size = Number.parseInt(raw.subarray(at, lineEnd).toString("latin1"), 16);
    expect(Number.isNaN(size)).toBe(false);
    if (size === 0) {
      complete = true;
      break;
    }
    const start = lineEnd + 2;
    // A chunk cut short: what arrived of it still belongs to the body.
    parts.push(raw.subarray(start, Math.min(start + size, raw.length)));
    if (start + size + 2 > raw.length) break;
    at = start + size + 2;
  }
  return { status: head.slice(0, head.indexOf("\r\n")), body: Buffer.concat(parts).toString("utf8"), complete };
}

/** The complete events of an event-stream body, parsed as the spec says (a frame cut short is no event). */
function eventsOf(body: string): Array<{ id: string; event: ArtifactEvent }> {
  const parser = new SpecSseParser();
  parser.push(body);
  return parser.events.filter((e) => e.type === "artifact-updated").map((e) => ({
    id: e.lastEventId,
    event: JSON.parse(e.data) as ArtifactEvent,
  }));
}

/** ~60 KB of payload (MAX_PAYLOAD_BYTES is 64 KiB). */
const BIG = "x".repeat(60_000);
/** Events written at most while waiting for the stall (~60 MB), and after it. */
const MAX_EVENTS = 1000;
const AFTER_STALL = 20;

describe("a client that stops reading, against a Node server process (SSE_STALL_MS=300)", () => {
  const cluster = useCluster("all");
  let server: ServerProcess;
  const paused: PausedClient[] = [];
  const streams: SseConnection[] = [];

  beforeAll(async () => {
    server = await cluster.start({
      DATA_DIR: cluster.dataDir().dir,
      SSE_STALL_MS: "300",
      METRICS: "on",
      MAX_ARTIFACTS_PER_THREAD: String(MAX_EVENTS + AFTER_STALL),
    });
  });
  afterAll(async () => {
    for (const client of paused) client.destroy();
    await Promise.all(streams.map((s) => s.close()));
  });

  const metric = async (name: string, kind: StreamKind) => (await scrape(server.url)).value(name, { kind }) ?? 0;

  async function create(threadId: string, n: number): Promise<void> {
    const r = await http(server.url, "POST", `/v1/threads/${threadId}/artifacts`, {
      artifactType: "blob",
      payload: { n, blob: BIG },
    });
    expect(r.status, r.text).toBe(201);
  }

  /**
   * Writes events until the stalled stream has been ended (past the kernel's socket
   * buffers: ~4 MB, ~66 events, on a Linux loopback), then a few more; returns how many.
   */
  async function writeUntilStalled(kind: StreamKind, write: (n: number) => Promise<void>): Promise<number> {
    let n = 0;
    while (n < MAX_EVENTS) {
      await write(++n);
      if (n % 10 === 0 && (await metric("artifacts_sse_stalled_total", kind)) > 0) break;
    }
    for (let i = 0; i < AFTER_STALL; i++) await write(++n);
    return n;
  }

  async function healthy(path: string, headers: Record<string, string> = {}): Promise<SseConnection> {
    const stream = await SseConnection.open(`${server.url}${path}`, headers);
    streams.push(stream);
    expect(stream.response.status).toBe(200);
    await stream.until((c) => c.parser.retries.length > 0, "retry");
    return stream;
  }

  function stalledLines(kind: StreamKind): string[] {
    return server.output().split("\n").filter((line) =>
      line.includes("its client took nothing for") && line.includes(`"kind":"${kind}"`)
    );
  }

  it("GET /v1/threads/{id}/events: the stalled stream is ended and counted, the healthy one gets every event", async () => {
    const threadId = newThreadId("slow");
    const path = `/v1/threads/${threadId}/events`;
    const reading = await healthy(path);
    const stalled = new PausedClient(server.url, path);
    paused.push(stalled);
    await waitFor("both streams open", async () => (await metric("artifacts_sse_streams", "thread")) === 2);

    const written = await writeUntilStalled("thread", (n) => create(threadId, n));

    // Nothing of the healthy stream is delayed or lost: every event, in order, still open.
    await reading.untilSeq(written);
    expect(reading.seqs).toEqual(range(1, written));
    expect(reading.ended).toBe(false);
    // The stalled one was ended once: counted, its gauge down (only the healthy one is left).
    await waitFor(
      "the stall counted and the stream closed",
      async () =>
        (await metric("artifacts_sse_stalled_total", "thread")) === 1 &&
        (await metric("artifacts_sse_streams", "thread")) === 1,
    );
    // Written by the server's logger within a turn of the stall; one line, no payload.
    await waitFor("the stall's log line", () => stalledLines("thread").length > 0);
    expect(stalledLines("thread")).toHaveLength(1);
    expect(stalledLines("thread")[0]).toContain(threadId);
    expect(stalledLines("thread")[0]).not.toContain(BIG.slice(0, 100));

    // Reading again, the client gets what its socket held: a prefix of the events, in
    // order, and then the end of the connection (not a clean end of the body).
    const got = dechunk(await stalled.readToEnd());
    expect(got.status).toBe("HTTP/1.1 200 OK");
    expect(got.complete).toBe(false);
    expect(got.body.startsWith("retry: 2000\n\n")).toBe(true);
    const prefix = eventsOf(got.body);
    expect(prefix.length).toBeGreaterThan(0);
    expect(prefix.length).toBeLessThan(written);
    expect(prefix.map((e) => e.event.seq)).toEqual(range(1, prefix.length));
    expect(prefix.map((e) => e.id)).toEqual(range(1, prefix.length).map(String));

    // It resumes with Last-Event-ID and loses nothing.
    const resumed = await healthy(path, { "last-event-id": prefix.at(-1)?.id as string });
    await resumed.untilSeq(written);
    expect(resumed.seqs).toEqual(range(prefix.length + 1, written));
  });

  it("GET /v1/events: the same for a stream of two threads", async () => {
    const [a, b] = [newThreadId("slow-a"), newThreadId("slow-b")];
    const path = `/v1/events?threads=${a},${b}`;
    const reading = await healthy(path);
    const stalled = new PausedClient(server.url, path);
    paused.push(stalled);
    await waitFor("both streams open", async () => (await metric("artifacts_sse_streams", "many")) === 2);

    // Alternately: a gets the odd writes, b the even ones.
    const written = await writeUntilStalled("many", (n) => create(n % 2 === 1 ? a : b, Math.ceil(n / 2)));
    const [ofA, ofB] = [Math.ceil(written / 2), Math.floor(written / 2)];

    const per = (events: Array<{ event: ArtifactEvent }>, threadId: string) =>
      events.filter((e) => e.event.threadId === threadId).map((e) => e.event.seq);
    await reading.until((c) => c.events.length === written, `${written} events`);
    expect(per(reading.events, a)).toEqual(range(1, ofA));
    expect(per(reading.events, b)).toEqual(range(1, ofB));
    expect(reading.ended).toBe(false);
    await waitFor(
      "the stall counted and the stream closed",
      async () =>
        (await metric("artifacts_sse_stalled_total", "many")) === 1 &&
        (await metric("artifacts_sse_streams", "many")) === 1,
    );
    await waitFor("the stall's log line", () => stalledLines("many").length > 0);
    expect(stalledLines("many")).toHaveLength(1);

    const got = dechunk(await stalled.readToEnd());
    expect(got.complete).toBe(false);
    const prefix = eventsOf(got.body);
    expect(prefix.length).toBeGreaterThan(0);
    expect(prefix.length).toBeLessThan(written);
    const [seenA, seenB] = [per(prefix, a), per(prefix, b)];
    expect(seenA).toEqual(range(1, seenA.length));
    expect(seenB).toEqual(range(1, seenB.length));

    // The last id it got (a resume token for both threads) resumes each where it stopped.
    const resumed = await healthy(path, { "last-event-id": prefix.at(-1)?.id as string });
    await resumed.until((c) => c.events.length === written - prefix.length, "the rest of the events");
    expect(per(resumed.events, a)).toEqual(range(seenA.length + 1, ofA));
    expect(per(resumed.events, b)).toEqual(range(seenB.length + 1, ofB));
  });
});

// ---------------------------------------------------------------- in-process

const TENANT = "local";

/** A log the test fills, read as the feeds and streams read the service's. */
class MemoryLog implements EventReader {
  readonly #events = new Map<string, LogEvent[]>();

  append(threadId: string, count: number): void {
    const events = this.#events.get(threadId) ?? [];
    for (let i = 0; i < count; i++) {
      const seq = events.length + 1;
      events.push({ seq, data: JSON.stringify({ threadId, seq, op: "add" }) });
    }
    this.#events.set(threadId, events);
  }

  readEvents(_tenant: string, threadId: string, afterSeq: number, limit: number): Promise<LogEvent[]> {
    return Promise.resolve((this.#events.get(threadId) ?? []).filter((e) => e.seq > afterSeq).slice(0, limit));
  }

  head(_tenant: string, threadId: string): Promise<number> {
    return Promise.resolve(this.#events.get(threadId)?.length ?? 0);
  }
}

/** Streams opened and closed, and stalls, per kind. */
function recordingMetrics() {
  const counts = { opened: 0, closed: 0, stalled: [] as StreamKind[] };
  const metrics: Metrics = {
    ...noMetrics,
    streamOpened: () => {
      counts.opened++;
      return { eventsSent() {}, closed: () => void counts.closed++ };
    },
    streamStalled: (kind) => void counts.stalled.push(kind),
  };
  return { counts, metrics };
}

function inProcess(options: Partial<StreamOptions>) {
  const log = new MemoryLog();
  const feeds = new FeedHub({ reader: log, notifier: new InProcessNotifier(), pollMs: 60_000 });
  const { counts, metrics } = recordingMetrics();
  const streamOptions: StreamOptions = {
    retryMs: 2000,
    pingMs: 60_000,
    maxLifetimeMs: 600_000,
    stallMs: 600_000,
    ...options,
  };
  const app = new Hono()
    .get(
      "/threads/:threadId/events",
      (c) =>
        streamThreadEvents(c, { tenant: TENANT, threadId: c.req.param("threadId"), resumeAfter: 0 }, {
          feeds,
          reader: log,
          options: streamOptions,
          metrics,
        }),
    )
    .get("/events", (c) =>
      streamManyThreadEvents(c, {
        tenant: TENANT,
        threads: (c.req.query("threads") ?? "").split(",").map((threadId) => ({ threadId, after: 0 })),
      }, {
        feeds,
        reader: log,
        options: streamOptions,
        metrics,
        eventId: (positions) => Promise.resolve([...positions.values()].join(".")),
      }));
  return { app, log, feeds, counts };
}

/** What reading the body now gives: its next chunk as text, the end, or the error it failed with. */
async function nextRead(body: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  try {
    const { done, value } = await body.read();
    return done ? "end" : new TextDecoder().decode(value);
  } catch (error) {
    return `failed: ${String(error)}`;
  }
}

describe("a write nobody takes, in-process", () => {
  it("the lifetime's end ends a stream whose client reads nothing: the body fails, the feed is released", async () => {
    const t = inProcess({ maxLifetimeMs: 50 });
    t.log.append("t", 3);
    const response = await t.app.request("/threads/t/events");
    expect(response.status).toBe(200);
    // Nothing is read, not even `retry:`: the first write waits from the start.
    await waitFor("the feed released", () => t.feeds.size === 0);
    expect(t.counts).toEqual({ opened: 1, closed: 1, stalled: [] });
    const body = (response.body as ReadableStream<Uint8Array>).getReader();
    expect(await nextRead(body)).toMatch(/^failed: .*lifetime is over and its client is behind/);
  });

  it("a write not taken within stallMs ends the stream once, counted as a stall", async () => {
    const t = inProcess({ stallMs: 50 });
    t.log.append("t", 3);
    const response = await t.app.request("/threads/t/events");
    const body = (response.body as ReadableStream<Uint8Array>).getReader();
    expect(await nextRead(body)).toBe("retry: 2000\n\n");
    // Then the client stops reading: the write of event 1 waits, and is given up.
    await waitFor("the feed released", () => t.feeds.size === 0);
    expect(t.counts).toEqual({ opened: 1, closed: 1, stalled: ["thread"] });
    expect(await nextRead(body)).toMatch(/^failed: .*client stopped reading/);
  });

  it("a stream that ends while its client reads nothing ends cleanly only at a read, else within stallMs", async () => {
    const t = inProcess({ maxLifetimeMs: 50, stallMs: 100 });
    const response = await t.app.request("/threads/t/events");
    const body = (response.body as ReadableStream<Uint8Array>).getReader();
    expect(await nextRead(body)).toBe("retry: 2000\n\n");
    // No write waits when the lifetime ends (there is nothing to send): the loop ends, and
    // its clean end waits for a read that never comes (bytes held back by the runtime
    // would stay queued before it), so the body fails as stalled.
    await waitFor("the stall counted", () => t.counts.stalled.length > 0);
    expect(t.counts).toEqual({ opened: 1, closed: 1, stalled: ["thread"] });
    expect(t.feeds.size).toBe(0);
    expect(await nextRead(body)).toMatch(/^failed: .*client stopped reading/);
  });

  it("a client that goes away ends a waiting write at once, and is no stall", async () => {
    const t = inProcess({});
    t.log.append("t", 3);
    const gone = new AbortController();
    const response = await t.app.request("/threads/t/events", { signal: gone.signal });
    expect(response.status).toBe(200);
    expect(t.feeds.size).toBe(1);
    gone.abort();
    await waitFor("the feed released", () => t.feeds.size === 0);
    expect(t.counts).toEqual({ opened: 1, closed: 1, stalled: [] });
  });

  it("a many-threads stream whose write stalls mid-batch still frees every thread's feed", async () => {
    const t = inProcess({ stallMs: 50 });
    t.log.append("a", 5);
    t.log.append("b", 5);
    const response = await t.app.request("/events?threads=a,b");
    const body = (response.body as ReadableStream<Uint8Array>).getReader();
    expect(await nextRead(body)).toBe("retry: 2000\n\n");
    // One event, then nothing more is read: the rest of its batch (and b's) wait.
    expect(await nextRead(body)).toMatch(/^id: /);
    await waitFor("both feeds released", () => t.feeds.size === 0);
    expect(t.counts).toEqual({ opened: 1, closed: 1, stalled: ["many"] });
  });
});
