/**
 * Metrics and traces under Deno (`deno task serve`, the real binary): the same
 * `GET /metrics` families as on Node (prom-client runs under Deno through npm), exact
 * after a scripted workload, the stream gauge, METRICS_TOKEN; and with Deno's built-in
 * OpenTelemetry (`OTEL_DENO=true`), our spans land in Deno's provider: Deno's server span
 * (the caller's child), ours under it, and the commit and store spans under that.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startOtlpReceiver } from "../support/otlp-receiver.ts";
import { REQUIRED_FAMILIES, scrape } from "../support/prometheus.ts";
import { type ServerProcess, startDenoServer } from "../support/server-process.ts";
import { SseConnection } from "../support/sse.ts";
import { waitFor } from "../support/wait.ts";

const dirs: string[] = [];
const servers: ServerProcess[] = [];

async function denoServer(env: Record<string, string> = {}): Promise<ServerProcess> {
  const dir = mkdtempSync(join(tmpdir(), "artifacts-deno-telemetry-"));
  dirs.push(dir);
  const server = await startDenoServer({ DATA_DIR: dir, ...env });
  servers.push(server);
  return server;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.stop()));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function create(base: string, threadId: string, headers: Record<string, string> = {}) {
  return fetch(`${base}/v1/threads/${threadId}/artifacts`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ artifactType: "plan", payload: { deno: true } }),
  });
}

describe("Deno: GET /metrics", () => {
  it("exposes every family Node does, exactly counted, with the stream gauge and METRICS_TOKEN", async () => {
    const server = await denoServer({ METRICS_TOKEN: "deno-scrape" });
    expect((await fetch(`${server.url}/metrics`)).status).toBe(401);
    const auth = { authorization: "Bearer deno-scrape" };
    const N = 5;
    for (let i = 0; i < N; i++) expect((await create(server.url, "deno-metrics")).status).toBe(201);

    let metrics = await scrape(server.url, auth);
    for (const [family, kind] of Object.entries(REQUIRED_FAMILIES)) {
      expect(metrics.types.get(family), family).toBe(kind);
    }
    expect(metrics.value("http_server_request_duration_seconds_count", {
      http_request_method: "POST",
      http_route: "/v1/threads/:threadId/artifacts",
      http_response_status_code: "201",
    })).toBe(N);
    expect(metrics.value("artifacts_commits_total")).toBe(N);
    expect(metrics.value("artifacts_commit_patches_sum")).toBe(N);
    expect(metrics.value("artifacts_cache_up")).toBe(1);

    const stream = await SseConnection.open(`${server.url}/v1/threads/deno-metrics/events`);
    try {
      await stream.untilSeq(N);
      metrics = await scrape(server.url, auth);
      expect(metrics.value("artifacts_sse_streams", { kind: "thread" })).toBe(1);
      expect(metrics.value("artifacts_sse_events_sent_total", { kind: "thread" })).toBe(N);
    } finally {
      await stream.close();
    }
    await waitFor(
      "the stream gauge back at 0",
      async () => (await scrape(server.url, auth)).value("artifacts_sse_streams", { kind: "thread" }) === 0,
    );
    const labels = (await scrape(server.url, auth)).samples.flatMap((s) => Object.values(s.labels));
    expect(labels.filter((value) => value.includes("deno-metrics"))).toEqual([]);
  });
});

describe("Deno: OTEL_DENO=true", () => {
  it("puts our spans in Deno's trace of the request, under the caller's span", async () => {
    const receiver = await startOtlpReceiver();
    try {
      const server = await denoServer({
        OTEL_DENO: "true",
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_SERVICE_NAME: "thread-artifacts",
        OTEL_DENO_CONSOLE: "ignore",
        // Deno batches spans; a short delay keeps the test short (the wait below is bounded either way).
        OTEL_BSP_SCHEDULE_DELAY: "100",
      });
      const traceId = randomBytes(16).toString("hex");
      const callerSpanId = randomBytes(8).toString("hex");
      expect((await create(server.url, "deno-traced", { traceparent: `00-${traceId}-${callerSpanId}-01` })).status)
        .toBe(201);
      // Deno exports on its own schedule, in batches: the commit's spans can come a batch
      // before the request's (which end after the answer). Wait (bounded) for all of them.
      const trace = await waitFor("the create's spans", () => {
        const spans = receiver.spans.filter((span) => span.traceId === traceId);
        const names = new Set(spans.map((span) => span.name));
        const all = ["libsql apply", "blob putIfAbsent", "commit", "POST /v1/threads/:threadId/artifacts"]
          .every((name) => names.has(name)) && spans.some((span) => span.parentSpanId === callerSpanId);
        return all && spans;
      });
      const denoServerSpan = trace.find((span) => span.parentSpanId === callerSpanId);
      expect(denoServerSpan?.kind).toBe(2);
      const ours = trace.find((span) => span.name === "POST /v1/threads/:threadId/artifacts");
      expect(ours).toMatchObject({ kind: 1, parentSpanId: denoServerSpan?.spanId, service: "thread-artifacts" });
      const commit = trace.find((span) => span.name === "commit");
      expect(commit?.parentSpanId).toBe(ours?.spanId);
      for (const name of ["blob putIfAbsent", "libsql apply"]) {
        expect(trace.find((span) => span.name === name)?.parentSpanId, name).toBe(commit?.spanId);
      }
    } finally {
      await receiver.close();
    }
  });
});
