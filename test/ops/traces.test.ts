/**
 * OpenTelemetry traces of a real Node server exported over OTLP/HTTP to a receiver in
 * this test (API.md "Operations"), in both protocols: one create started with a W3C
 * `traceparent` gives a server span that is the child of the caller's span, and below
 * it, in the same trace, the write group's commit span with the rollout's and libSQL's
 * calls; work of no request (a thread's feed polling for a stream) makes no spans of its
 * own. The server is stopped (SIGTERM) before the spans are read: the shutdown exports
 * what is still queued, so nothing is waited for by time. Then the settings: the service
 * name, the sampler (ratio 0 records only a caller's sampled trace), a collector that is
 * down (writes go on, the failure is logged, the shutdown ends), and values the server
 * refuses to start with.
 */
import { randomBytes } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { closedPort, http, useCluster } from "../support/cluster.ts";
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "../support/otlp-receiver.ts";
import { SseConnection } from "../support/sse.ts";
import { waitFor } from "../support/wait.ts";

const SERVER = 2;
const INTERNAL = 1;
const CLIENT = 3;

// Every test: its own servers and a fresh OTLP receiver.
const cluster = useCluster();
let receiver: OtlpReceiver;
beforeEach(async () => {
  receiver = await startOtlpReceiver();
});
afterEach(() => receiver.close());

describe("OTLP traces from the Node server", () => {
  for (const protocol of ["http/protobuf", "http/json"] as const) {
    it(`exports the span tree of a create that came with a traceparent (${protocol})`, async () => {
      const server = await cluster.start({
        DATA_DIR: cluster.dataDir().dir,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
        // The stream's feed polls often: none of it may show as spans.
        SSE_POLL_MS: "10",
      });
      const traceId = randomBytes(16).toString("hex");
      const callerSpanId = randomBytes(8).toString("hex");
      const created = await http(server.url, "POST", "/v1/threads/traced/artifacts", {
        artifactType: "plan",
        payload: { traced: true },
      }, { traceparent: `00-${traceId}-${callerSpanId}-01` });
      expect(created.status).toBe(201);
      // A request without a traceparent starts a trace of its own; a scrape is no request.
      expect((await http(server.url, "GET", "/v1/threads/traced")).status).toBe(200);
      expect((await fetch(`${server.url}/metrics`)).status).toBe(200);
      const stream = await SseConnection.open(`${server.url}/v1/threads/traced/events`);
      await stream.untilSeq(1);
      expect(
        (await http(server.url, "POST", "/v1/threads/traced/artifacts", { artifactType: "plan", payload: 2 })).status,
      )
        .toBe(201);
      await stream.untilSeq(2);
      await stream.close();
      await server.stop();

      expect(
        receiver.contentTypes.every((type) =>
          type === (protocol === "http/json" ? "application/json" : "application/x-protobuf")
        ),
      )
        .toBe(true);
      const trace = receiver.spans.filter((span) => span.traceId === traceId);
      const root = only(trace, (span) => span.kind === SERVER);
      expect(root).toMatchObject({
        parentSpanId: callerSpanId,
        name: "POST /v1/threads/:threadId/artifacts",
        service: "thread-artifacts",
        attributes: {
          "http.request.method": "POST",
          "http.route": "/v1/threads/:threadId/artifacts",
          "http.response.status_code": 201,
        },
      });
      const commit = only(trace, (span) => span.name === "commit");
      expect(commit).toMatchObject({
        kind: INTERNAL,
        parentSpanId: root.spanId,
        attributes: { "artifacts.commit.writes": 1 },
      });
      const put = only(trace, (span) => span.name === "blob putIfAbsent");
      expect(put).toMatchObject({
        kind: CLIENT,
        parentSpanId: commit.spanId,
        attributes: { "artifacts.store": "blob" },
      });
      const apply = only(trace, (span) => span.name === "libsql apply");
      expect(apply).toMatchObject({
        kind: CLIENT,
        parentSpanId: commit.spanId,
        attributes: { "artifacts.store": "libsql" },
      });
      // Every span of the trace hangs under the server span (nothing orphaned, nothing of another request).
      for (const span of trace) if (span !== root) expect(ancestors(trace, span), span.name).toContain(root.spanId);
      // No span carries the thread id or the raw path.
      expect(JSON.stringify(trace)).not.toContain("traced/");

      const read = only(receiver.spans, (span) => span.name === "GET /v1/threads/:threadId");
      expect(read.traceId).not.toBe(traceId);
      expect(read.parentSpanId).toBe("");
      expect(receiver.spans.some((span) => span.name.includes("metrics"))).toBe(false);
      // One trace per request (two creates, a read, a stream), each rooted in its server span.
      const roots = receiver.spans.filter((span) => span.kind === SERVER);
      expect(roots.map((span) => span.name).sort()).toEqual([
        "GET /v1/threads/:threadId",
        "GET /v1/threads/:threadId/events",
        "POST /v1/threads/:threadId/artifacts",
        "POST /v1/threads/:threadId/artifacts",
      ]);
      for (const span of receiver.spans) {
        const root = roots.find((r) => r.traceId === span.traceId);
        expect(root, `the trace of ${span.name}`).toBeDefined();
        if (span !== root) expect(ancestors(receiver.spans, span), span.name).toContain(root?.spanId);
      }
      // The thread's feed (shared by its streams, hinted by commits) reads outside any request:
      // the second create's trace is its commit alone, the stream's has no feed read.
      const namesIn = (root: ReceivedSpan | undefined) =>
        receiver.spans.filter((span) => span.traceId === root?.traceId).map((span) => span.name).sort();
      const secondCreate = roots.find((span) => span.name.startsWith("POST") && span.traceId !== traceId);
      expect(namesIn(secondCreate)).toEqual([
        "POST /v1/threads/:threadId/artifacts",
        "blob putIfAbsent",
        "commit",
        "libsql apply",
      ]);
      expect(namesIn(roots.find((span) => span.name.endsWith("/events")))).not.toContain("libsql seq");
    });
  }
});

describe("OTLP traces from the Node server: settings and a collector that is down", () => {
  it("names the service as OTEL_SERVICE_NAME says, and samples as OTEL_TRACES_SAMPLER says (a caller's sampled trace followed)", async () => {
    const server = await cluster.start({
      DATA_DIR: cluster.dataDir().dir,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_SERVICE_NAME: "artifacts-eu",
      OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
      OTEL_TRACES_SAMPLER_ARG: "0",
    });
    const traceId = randomBytes(16).toString("hex");
    for (let i = 0; i < 5; i++) {
      expect(
        (await http(server.url, "POST", "/v1/threads/sampled/artifacts", { artifactType: "plan", payload: i }))
          .status,
      ).toBe(201);
    }
    const followed = await http(server.url, "POST", "/v1/threads/sampled/artifacts", {
      artifactType: "plan",
      payload: "followed",
    }, { traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01` });
    expect(followed.status).toBe(201);
    await server.stop();
    expect(server.child.exitCode).toBe(0);
    // Ratio 0: only the caller's sampled trace is recorded, all of it.
    expect(new Set(receiver.spans.map((span) => span.traceId))).toEqual(new Set([traceId]));
    expect(receiver.spans.map((span) => span.name).sort()).toEqual([
      "POST /v1/threads/:threadId/artifacts",
      "blob putIfAbsent",
      "commit",
      "libsql apply",
    ]);
    expect(new Set(receiver.spans.map((span) => span.service))).toEqual(new Set(["artifacts-eu"]));
  });

  it("keeps serving with the collector down, says so in the log, and still shuts down cleanly", async () => {
    const server = await cluster.start({
      DATA_DIR: cluster.dataDir().dir,
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await closedPort()}`,
      OTEL_BSP_SCHEDULE_DELAY: "1",
      // The exporter's own bound on an export, retries included (its default: 10 s).
      OTEL_EXPORTER_OTLP_TIMEOUT: "300",
    });
    for (let i = 0; i < 3; i++) {
      expect(
        (await http(server.url, "POST", "/v1/threads/undelivered/artifacts", { artifactType: "plan", payload: i }))
          .status,
      ).toBe(201);
    }
    await waitFor("the export failure in the log", () => /OpenTelemetry: span export failed/.test(server.output()));
    expect((await http(server.url, "GET", "/v1/threads/undelivered")).status).toBe(200);
    await server.stop();
    expect(server.child.exitCode).toBe(0);
  });

  for (
    const [name, value, message] of [
      ["OTEL_TRACES_SAMPLER", "sometimes", /OTEL_TRACES_SAMPLER must be/],
      ["OTEL_TRACES_SAMPLER_ARG", "1.5", /OTEL_TRACES_SAMPLER_ARG must be a ratio/],
      ["OTEL_BSP_MAX_QUEUE_SIZE", "many", /OTEL_BSP_MAX_QUEUE_SIZE must be a non-negative integer/],
      ["OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", /OTEL_EXPORTER_OTLP_PROTOCOL must be http\/protobuf or http\/json/],
    ] as const
  ) {
    it(`refuses to start with ${name}=${value}, saying why`, async () => {
      const env = {
        DATA_DIR: cluster.dataDir().dir,
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
        [name]: value,
      };
      const failed = await cluster.start(env).then(() => null, (error: Error) => error);
      expect(failed?.message).toMatch(/exited with 1 before listening/);
      expect(failed?.message).toMatch(message);
    });
  }
});

function only(spans: ReceivedSpan[], predicate: (span: ReceivedSpan) => boolean): ReceivedSpan {
  const found = spans.filter(predicate);
  if (found.length !== 1) {
    throw new Error(`${found.length} spans match, of ${JSON.stringify(spans.map((s) => s.name))}`);
  }
  return found[0] as ReceivedSpan;
}

function ancestors(spans: ReceivedSpan[], span: ReceivedSpan): string[] {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const chain: string[] = [];
  for (let parent = byId.get(span.parentSpanId); parent; parent = byId.get(parent.parentSpanId)) {
    chain.push(parent.spanId);
  }
  return chain;
}
