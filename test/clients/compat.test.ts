/**
 * Client compatibility: the SSE clients people use (test/clients/sse-clients.ts),
 * against the real Node server process (`src/runtime/node.ts`, the one `npm start`
 * runs), through restarts on the same data. Chromium's EventSource runs the same
 * scenarios in test/browser/clients.test.ts.
 *
 * The last block is the reproduction of a stream opened right after a restart that
 * never delivered: with the rollout store failing for the first moments (a deterministic
 * stand-in for whatever makes the first log read fail), the stream used to end right
 * after `retry:`, and fetch-event-source, which does not reconnect after a clean end,
 * stayed silent for good.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ServerProcess } from "../support/server-process.ts";
import { freePort, newThreadId } from "../support/live-server.ts";
import { Cluster, http } from "../support/cluster.ts";
import { startFaultProxy } from "../support/fault-proxy.ts";
import { S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY, startS3rver } from "../support/s3rver.ts";
import { waitFor } from "../support/wait.ts";
import { pooledFetch } from "../support/pooled-fetch.ts";
import { PLAIN_FETCH_EVENT_SOURCE, SSE_CLIENTS, type Subscription } from "./sse-clients.ts";
import { once } from "node:events";

const TOKEN = "compat-token";
const AUTH = { authorization: `Bearer ${TOKEN}` };

/** One service: a data folder and a port it keeps across restarts, so clients reconnect to the same URL. */
class Service {
  readonly #cluster = new Cluster();
  readonly dir = this.#cluster.tempDir("compat-");
  readonly env: Record<string, string>;
  server: ServerProcess | undefined;

  constructor(port: number, extra: Record<string, string> = {}) {
    this.env = { DATA_DIR: this.dir, PORT: String(port), AUTH_TOKENS: `${TOKEN}:acme`, ...extra };
  }

  get url(): string {
    return (this.server as ServerProcess).url;
  }

  async start(): Promise<void> {
    this.server = await this.#cluster.start(this.env);
  }

  /** SIGTERM, wait for the exit, start again on the same data and port. */
  async restart(): Promise<void> {
    await this.server?.stop();
    await this.start();
  }

  async create(threadId: string, n: number): Promise<number> {
    const r = await http(this.url, "POST", `/v1/threads/${threadId}/artifacts`, {
      artifactType: "note",
      payload: { n },
    }, AUTH);
    expect(r.status, r.text).toBe(201);
    return r.json.thread.rolloutSeq;
  }

  /** Kills every process it started and removes its data folder. */
  async stop(): Promise<void> {
    await this.#cluster.cleanup();
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const seqsOf = (s: Subscription) => s.received.map((r) => r.event.seq);
const untilSeqs = (s: Subscription, n: number, what: string) =>
  waitFor(what, () => s.received.length >= n || s.failure !== undefined, { timeoutMs: 30_000 });

const open: Subscription[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

for (const client of SSE_CLIENTS) {
  describe(client.name, () => {
    let service: Service;
    beforeAll(async () => {
      service = new Service(await freePort());
      await service.start();
    });
    afterAll(() => service?.stop());

    const eventsUrl = (threadId: string, query = "") => `${service.url}/v1/threads/${threadId}/events${query}`;
    const subscribe = (threadId: string, options: Parameters<typeof client.open>[1] = { token: TOKEN }, query = "") => {
      const subscription = client.open(eventsUrl(threadId, query), options);
      open.push(subscription);
      return subscription;
    };

    it("subscribes before the thread exists and receives its events live, in order, with their seqs as ids", async () => {
      const threadId = newThreadId("compat-live");
      const stream = subscribe(threadId);
      for (let n = 1; n <= 3; n++) await service.create(threadId, n);
      await untilSeqs(stream, 3, "3 events");
      expect(stream.failure).toBeUndefined();
      expect(seqsOf(stream)).toEqual([1, 2, 3]);
      expect(stream.received.map((r) => r.id)).toEqual(["1", "2", "3"]);
      expect(stream.received.map((r) => r.event.artifact.payload)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    });

    it("survives a server restart (SIGTERM, start again on the same data): nothing lost, nothing twice", async () => {
      const threadId = newThreadId("compat-restart");
      const stream = subscribe(threadId);
      for (let n = 1; n <= 3; n++) await service.create(threadId, n);
      await untilSeqs(stream, 3, "the events before the restart");
      await service.restart();
      for (let n = 4; n <= 6; n++) await service.create(threadId, n);
      await untilSeqs(stream, 6, "the events after the restart");
      expect(stream.failure).toBeUndefined();
      expect(seqsOf(stream)).toEqual(range(1, 6));
      // It came back on its own: more than the one request.
      expect(stream.requests).toBeGreaterThan(1);
    });

    it("a stream opened in the first moments after a restart delivers", async () => {
      await service.restart();
      const threadId = newThreadId("compat-early");
      const stream = subscribe(threadId);
      for (let n = 1; n <= 10; n++) await service.create(threadId, n);
      await untilSeqs(stream, 10, "10 events");
      expect(seqsOf(stream)).toEqual(range(1, 10));
    });

    if (client.canResumeFromStoredId) {
      it("resumes after a stored Last-Event-ID", async () => {
        const threadId = newThreadId("compat-resume");
        for (let n = 1; n <= 5; n++) await service.create(threadId, n);
        const stream = subscribe(threadId, { token: TOKEN, lastEventId: "3" });
        await untilSeqs(stream, 2, "the events after 3");
        await service.create(threadId, 6);
        await untilSeqs(stream, 3, "the live event");
        expect(seqsOf(stream)).toEqual([4, 5, 6]);
      });
    } else {
      it("starts after ?since= (the W3C API cannot send a stored Last-Event-ID; it sends its own on reconnect)", async () => {
        const threadId = newThreadId("compat-since");
        for (let n = 1; n <= 5; n++) await service.create(threadId, n);
        const stream = subscribe(threadId, { token: TOKEN }, "?since=3");
        await untilSeqs(stream, 2, "the events after 3");
        expect(seqsOf(stream)).toEqual([4, 5]);
      });
    }

    if (client.name.startsWith("eventsource") || client.name.includes("fetch-event-source")) {
      it("authenticates with ?access_token= instead of a header", async () => {
        const threadId = newThreadId("compat-query-token");
        const stream = subscribe(threadId, { queryToken: TOKEN });
        await service.create(threadId, 1);
        await untilSeqs(stream, 1, "the event");
        expect(stream.failure).toBeUndefined();
        expect(seqsOf(stream)).toEqual([1]);
      });
    }

    it("reports a 401 and gives up instead of retrying it", async () => {
      const stream = subscribe(newThreadId("compat-401"), { token: "not-a-token" });
      await waitFor("the client to give up", () => stream.failure !== undefined);
      expect(stream.failure).toEqual({ status: 401 });
      expect(stream.received).toEqual([]);
      expect(stream.requests).toBe(1);
    });
  });
}

describe("the reproduction: restart, and at once a stream by fetch-event-source with only onmessage, then 10 creates", () => {
  for (const client of [PLAIN_FETCH_EVENT_SOURCE, ...SSE_CLIENTS]) {
    it(`${client.name}: the stream reaches the new process, not the old one that is draining`, async () => {
      const service = new Service(await freePort());
      try {
        await service.start();
        await service.create(newThreadId("seed"), 1);
        // The client's connection pool holds a spare connection to the running process.
        const pool = await pooledFetch(service.url);
        const old = service.server as ServerProcess;
        const exited = once(old.child, "exit");
        old.child.kill("SIGTERM");
        // The successor listens as soon as the old process has closed its listener.
        await service.start();
        const threadId = newThreadId("repro");
        const stream = client.open(`${service.url}/v1/threads/${threadId}/events?since=0`, {
          token: TOKEN,
          fetch: pool.fetch,
        });
        open.push(stream);
        for (let n = 1; n <= 10; n++) await service.create(threadId, n);
        await untilSeqs(stream, 10, "10 events");
        expect(seqsOf(stream)).toEqual(range(1, 10));
        await exited;
      } finally {
        await service.stop();
      }
    });
  }

  it("a stream whose first reads fail (the rollout store answering 503 right after the restart) delivers once the store recovers", async () => {
    const s3 = await startS3rver();
    const proxy = await startFaultProxy(s3.endpoint);
    const bucket = await s3.createBucket();
    const service = new Service(await freePort(), {
      BLOB_STORE: `s3://${bucket}?endpoint=${encodeURIComponent(proxy.endpoint)}&region=${S3_REGION}`,
      AWS_ACCESS_KEY_ID: S3_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: S3_SECRET_ACCESS_KEY,
    });
    try {
      await service.start();
      await service.create(newThreadId("seed"), 1);
      proxy.failing = true;
      await service.restart();
      const threadId = newThreadId("repro-store");
      const stream = PLAIN_FETCH_EVENT_SOURCE.open(`${service.url}/v1/threads/${threadId}/events?since=0`, {
        token: TOKEN,
      });
      open.push(stream);
      // Long enough that the store client's own retries (4 attempts a read) give up: the
      // stream's first read and the feed's first read both fail.
      const before = proxy.count;
      await waitFor("the stream's first reads to fail", () => proxy.count >= before + 8);
      proxy.failing = false;
      for (let n = 1; n <= 10; n++) await service.create(threadId, n);
      await untilSeqs(stream, 10, "10 events");
      expect(seqsOf(stream)).toEqual(range(1, 10));
      expect(stream.requests).toBe(1);
    } finally {
      await service.stop();
      await proxy.close();
      await s3.close();
    }
  });
});
