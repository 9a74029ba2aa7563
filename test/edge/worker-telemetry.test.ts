/**
 * Metrics and trace context on Workers.
 *
 * workerd runs no OpenTelemetry SDK (the platform traces Workers natively) and keeps no
 * Analytics Engine data locally, so what can be seen there is that the Worker serves the
 * same with and without the `METRICS` binding, and with a caller's `traceparent`. What
 * the binding receives, and that the caller's trace context reaches the sequencer and its
 * spans join the request's trace, is checked here on Node, running the same
 * `workerFetch` and `ThreadSequencer` in process with a stub Durable Object namespace, a
 * recording dataset and an in-memory span exporter.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { context, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { traceContextOf } from "../../src/http/trace-context.ts";
import { AnalyticsEngineMetrics } from "../../src/runtime/analytics-engine.ts";
import {
  type DurableObjectNamespaceLike,
  type DurableObjectStateLike,
  SequencerClient,
  ThreadSequencer,
} from "../../src/runtime/sequencer.ts";
import { workerFetch } from "../../src/runtime/workers.ts";
import { type HranaServer, startHranaServer } from "../support/hrana-server.ts";
import { startWorker } from "../support/worker-process.ts";

const TOKEN = "worker-telemetry-token";
const AUTH = { authorization: `Bearer ${TOKEN}` };

interface DataPoint {
  indexes?: string[];
  blobs?: (string | null)[];
  doubles?: number[];
}

/** An Analytics Engine dataset that keeps what it is given. */
function recordingDataset() {
  const points: DataPoint[] = [];
  return { points, writeDataPoint: (point: DataPoint) => void points.push(point) };
}

/** A Durable Object namespace whose objects are ThreadSequencers in this process; it records each call's headers. */
function inProcessSequencers(env: Record<string, unknown>) {
  const objects = new Map<string, ThreadSequencer>();
  const calls: { path: string; headers: Headers }[] = [];
  const waits: Promise<unknown>[] = [];
  const state: DurableObjectStateLike = {
    acceptWebSocket: () => {},
    getWebSockets: () => [],
    waitUntil: (promise) => void waits.push(promise),
  };
  const namespace: DurableObjectNamespaceLike = {
    idFromName: (name) => name,
    get: (id) => ({
      fetch: async (input, init) => {
        const request = new Request(input, init);
        calls.push({ path: new URL(request.url).pathname, headers: request.headers });
        let object = objects.get(String(id));
        if (!object) objects.set(String(id), object = new ThreadSequencer(state, env));
        return object.fetch(request);
      },
    }),
  };
  return { namespace, calls, settled: () => Promise.all(waits) };
}

function createRequest(threadId: string, headers: Record<string, string> = {}): Request {
  return new Request(`https://worker.example/v1/threads/${threadId}/artifacts`, {
    method: "POST",
    headers: { "content-type": "application/json", ...AUTH, ...headers },
    body: JSON.stringify({ artifactType: "plan", payload: { on: "workers" } }),
  });
}

describe("Workers, in process: the sequencer joins the request's trace; Analytics Engine gets the events", () => {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  let dir: string;
  let hrana: HranaServer;

  beforeAll(async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager());
    trace.setGlobalTracerProvider(provider);
    dir = mkdtempSync(join(tmpdir(), "artifacts-worker-telemetry-"));
    hrana = await startHranaServer({ path: join(dir, "cache.db") });
  });
  afterAll(async () => {
    await provider.shutdown();
    trace.disable();
    context.disable();
    await hrana?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => exporter.reset());

  function workerEnv(extra: Record<string, unknown> = {}) {
    const env: Record<string, unknown> = {
      BLOB_STORE: "memory:",
      LIBSQL_URL: hrana.url,
      AUTH_TOKENS: `${TOKEN}:local`,
      ...extra,
    };
    const sequencers = inProcessSequencers(env);
    env.SEQUENCER = sequencers.namespace;
    return { env, ...sequencers };
  }

  it("carries the Worker's span into the object: its server span, commit and store spans are in the caller's trace", async () => {
    const { env, calls, settled } = workerEnv();
    const traceId = randomBytes(16).toString("hex");
    const callerSpanId = randomBytes(8).toString("hex");
    const response = await workerFetch(
      createRequest("w-traced", { traceparent: `00-${traceId}-${callerSpanId}-01` }),
      env,
      undefined,
    );
    expect(response.status).toBe(201);
    await settled();

    const spans = exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
    const worker = only(spans, (span) => span.name === "POST /v1/threads/:threadId/artifacts");
    expect(worker.parentSpanContext?.spanId).toBe(callerSpanId);
    // The call to the object carried the Worker's server span as its parent.
    const write = calls.find((call) => call.path === "/write");
    expect(write?.headers.get("traceparent")).toBe(`00-${traceId}-${worker.spanContext().spanId}-01`);
    const sequencer = only(spans, (span) => span.name === "sequencer /write");
    expect(sequencer.parentSpanContext?.spanId).toBe(worker.spanContext().spanId);
    const commit = only(spans, (span) => span.name === "commit");
    expect(commit.parentSpanContext?.spanId).toBe(sequencer.spanContext().spanId);
    for (const name of ["blob putIfAbsent", "libsql apply"]) {
      expect(only(spans, (span) => span.name === name).parentSpanContext?.spanId, name).toBe(
        commit.spanContext().spanId,
      );
    }
  });

  it("carries the request's id into the object: the caller's, or the one the Worker answers with", async () => {
    const { env, calls, settled } = workerEnv();
    const given = await workerFetch(createRequest("w-request-id", { "x-request-id": "req-42.a" }), env, undefined);
    expect([given.status, given.headers.get("x-request-id")]).toEqual([201, "req-42.a"]);
    const ids = (path: string) => calls.filter((call) => call.path === path).map((c) => c.headers.get("x-request-id"));
    expect(ids("/write")).toEqual(["req-42.a"]);
    calls.length = 0;
    const generated = await workerFetch(createRequest("w-request-id"), env, undefined);
    expect(generated.status).toBe(201);
    const id = generated.headers.get("x-request-id");
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(ids("/write")).toEqual([id]);
    // A malformed one is replaced, here and in the object alike.
    calls.length = 0;
    const replaced = await workerFetch(createRequest("w-request-id", { "x-request-id": "bad id!" }), env, undefined);
    expect(replaced.headers.get("x-request-id")).not.toBe("bad id!");
    expect(ids("/write")).toEqual([replaced.headers.get("x-request-id")]);
    await settled();
  });

  it("carries the caller's traceparent to the object where no span is active (workerd: no context manager)", async () => {
    const { namespace, calls } = workerEnv();
    const traceparent = `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`;
    const incoming = new Headers({ traceparent, tracestate: "vendor=value" });
    const client = new SequencerClient(namespace, { traceContext: traceContextOf(incoming) });
    await context.with(ROOT_CONTEXT, () => client.head("local", "w-untraced"));
    expect(calls.at(-1)?.headers.get("traceparent")).toBe(traceparent);
    expect(calls.at(-1)?.headers.get("tracestate")).toBe("vendor=value");
    // A request without one carries none.
    const plain = new SequencerClient(namespace, { traceContext: traceContextOf(new Headers()) });
    await context.with(ROOT_CONTEXT, () => plain.head("local", "w-untraced"));
    expect(calls.at(-1)?.headers.has("traceparent")).toBe(false);
  });

  it("writes the same events to the METRICS dataset, from the Worker and from the object, with no id in them", async () => {
    const dataset = recordingDataset();
    const { env, settled } = workerEnv({ METRICS: dataset });
    expect((await workerFetch(createRequest("w-metrics"), env, undefined)).status).toBe(201);
    const read = await workerFetch(
      new Request("https://worker.example/v1/threads/w-metrics", { headers: AUTH }),
      env,
      undefined,
    );
    expect(read.status).toBe(200);
    await settled();

    const blobsOf = (family: string) => dataset.points.filter((p) => p.blobs?.[0] === family).map((p) => p.blobs);
    expect(blobsOf("http_server_request_duration_seconds")).toEqual([
      ["http_server_request_duration_seconds", "POST", "/v1/threads/:threadId/artifacts", "201"],
      ["http_server_request_duration_seconds", "GET", "/v1/threads/:threadId", "200"],
    ]);
    // The object's commit: one point, its patches as the value.
    expect(dataset.points.filter((p) => p.blobs?.[0] === "artifacts_commit_patches").map((p) => p.doubles)).toEqual([[
      1,
    ]]);
    expect(blobsOf("artifacts_store_request_duration_seconds")).toContainEqual([
      "artifacts_store_request_duration_seconds",
      "blob",
      "putIfAbsent",
      "ok",
    ]);
    for (const point of dataset.points) {
      expect(point.indexes).toEqual([point.blobs?.[0]]);
      expect(point.doubles?.every(Number.isFinite)).toBe(true);
    }
    expect(JSON.stringify(dataset.points)).not.toContain("w-metrics");

    // Without the binding the same Worker serves the same.
    const bare = workerEnv();
    expect((await workerFetch(createRequest("w-bare"), bare.env, undefined)).status).toBe(201);
    await bare.settled();
  });

  it("never lets the dataset fail a request, and stays within its budget of points", () => {
    const written: DataPoint[] = [];
    const metrics = new AnalyticsEngineMetrics({
      writeDataPoint: (point) => {
        written.push(point);
        if (written.length > 2) throw new Error("over the limit");
      },
    }, 5);
    for (let i = 0; i < 10; i++) metrics.storeCall("blob", "get", "ok", 0.001);
    expect(written).toHaveLength(5);
    // A stream's events are summed into its closing point.
    const streamed = new AnalyticsEngineMetrics({ writeDataPoint: (point) => void written.push(point) });
    written.length = 0;
    const stream = streamed.streamOpened("many");
    stream.eventsSent(3);
    stream.eventsSent(4);
    stream.closed();
    stream.closed();
    expect(written.map((p) => [p.blobs, p.doubles])).toEqual([
      [["artifacts_sse_streams", "many"], [1]],
      [["artifacts_sse_streams", "many"], [-1]],
      [["artifacts_sse_events_sent_total", "many"], [7]],
    ]);
  });
});

describe("Workers in workerd: with and without the Analytics Engine binding", () => {
  for (const analyticsEngine of [true, false]) {
    it(`serves writes (with a caller's traceparent) and reads ${analyticsEngine ? "with" : "without"} METRICS`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "artifacts-worker-ae-"));
      const hrana = await startHranaServer({ path: join(dir, "cache.db") });
      const worker = await startWorker({ LIBSQL_URL: hrana.url, AUTH_TOKENS: `${TOKEN}:local` }, { analyticsEngine });
      try {
        const traceparent = `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`;
        const created = await fetch(`${worker.url}/v1/threads/ae-${analyticsEngine}/artifacts`, {
          method: "POST",
          headers: { "content-type": "application/json", traceparent, ...AUTH },
          body: JSON.stringify({ artifactType: "plan", payload: { analyticsEngine } }),
        });
        expect(created.status).toBe(201);
        const read = await fetch(`${worker.url}/v1/threads/ae-${analyticsEngine}`, { headers: AUTH });
        expect(read.status).toBe(200);
        expect((await read.json()).thread.artifacts).toHaveLength(1);
        // No /metrics on Workers: the Analytics Engine binding is where metrics go.
        expect((await fetch(`${worker.url}/metrics`, { headers: AUTH })).status).toBe(404);
      } finally {
        await worker.stop();
        await hrana.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

function only(spans: ReadableSpan[], predicate: (span: ReadableSpan) => boolean): ReadableSpan {
  const found = spans.filter(predicate);
  if (found.length !== 1) {
    throw new Error(`${found.length} spans match, of ${JSON.stringify(spans.map((s) => s.name))}`);
  }
  return found[0] as ReadableSpan;
}
