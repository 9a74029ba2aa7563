/**
 * OpenTelemetry tracing for the Node server, from the standard `OTEL_*` variables: when
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the
 * server's tracer (node-tracer.ts: the SDK's samplers, ids from span-ids.ts, spans
 * recorded as plain data) with its batches exported over OTLP/HTTP (span-export.ts,
 * `OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf`, the default, or `http/json`), an
 * AsyncLocalStorage context manager (so a request's spans find their parent across
 * awaits) and the W3C propagator, registered with `@opentelemetry/api`. Otherwise nothing
 * is registered and nothing loaded: the shared code's spans stay no-ops.
 *
 * Read here: `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER` (`otlp` or `none`),
 * `OTEL_TRACES_SAMPLER` (+ `_ARG`; default `parentbased_always_on`), `OTEL_BSP_SCHEDULE_DELAY`,
 * `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_EXPORT_TIMEOUT`.
 * The export reads `OTEL_SERVICE_NAME` (default `thread-artifacts`) and
 * `OTEL_RESOURCE_ATTRIBUTES`, and its exporter its own (`OTEL_EXPORTER_OTLP_HEADERS`,
 * `_TIMEOUT`, `_COMPRESSION`, certificates), from the process environment.
 */
import type { Sampler } from "@opentelemetry/sdk-trace";
import { logger } from "../logging/logger.ts";
import { withDeadline } from "../model/deadline.ts";
import { ConfigError, type Env } from "./config.ts";

export interface NodeTracing {
  /** The exporter's protocol, for the start line. */
  readonly protocol: OtlpProtocol;
  /**
   * Exports what is still queued, then stops (before the process exits). Never rejects,
   * and gives up after `timeoutMs`: a collector that does not answer (the exporter
   * retries for seconds) must not hold a shutdown.
   */
  shutdown(timeoutMs?: number): Promise<void>;
}

/** How long a shutdown waits for the last spans to be exported. */
const SHUTDOWN_FLUSH_MS = 2000;

type OtlpProtocol = "http/protobuf" | "http/json";

/** Registers tracing as the environment asks, or returns null when it asks for none. */
export async function startNodeTracing(env: Env): Promise<NodeTracing | null> {
  const endpoint = nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) ?? nonEmpty(env.OTEL_EXPORTER_OTLP_ENDPOINT);
  if (endpoint === undefined || env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return null;
  const exporterName = nonEmpty(env.OTEL_TRACES_EXPORTER)?.toLowerCase() ?? "otlp";
  if (exporterName === "none") return null;
  if (exporterName !== "otlp") throw new ConfigError(`OTEL_TRACES_EXPORTER must be otlp or none (got ${exporterName})`);
  const protocol = nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) ?? nonEmpty(env.OTEL_EXPORTER_OTLP_PROTOCOL) ??
    "http/protobuf";
  if (protocol !== "http/protobuf" && protocol !== "http/json") {
    throw new ConfigError(`OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or http/json (got ${protocol})`);
  }
  const maxQueueSize = numberFrom(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048);
  const batching = {
    maxQueueSize,
    // The spec: a batch is never larger than the queue.
    maxExportBatchSize: Math.min(numberFrom(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512), maxQueueSize),
    scheduledDelayMs: numberFrom(env, "OTEL_BSP_SCHEDULE_DELAY", 5000),
  };

  // Loaded only now: a server that exports nothing carries none of it.
  const [
    api,
    sdk,
    core,
    { AsyncLocalStorageContextManager },
    { NodeTracerProvider },
    { SpanIds },
    { startSpanExport },
  ] = await Promise.all([
    import("@opentelemetry/api"),
    import("@opentelemetry/sdk-trace"),
    import("@opentelemetry/core"),
    import("@opentelemetry/context-async-hooks"),
    import("./node-tracer.ts"),
    import("./span-ids.ts"),
    import("./span-export.ts"),
  ]);
  const sampler = samplerFrom(env, sdk);

  // The exporter reports failures through `diag`: to the log, or they would vanish. Its
  // messages go in a field: LogTape reads `{…}` in a message as placeholders.
  const log = logger("otel");
  const warn = (detail: string) => log.warn("OpenTelemetry: {detail}", { detail });
  const detail = (message: string, args: unknown[]) => [message, ...args.map(String)].join(" ");
  api.diag.setLogger({
    error: (message, ...args) => log.error("OpenTelemetry: {detail}", { detail: detail(message, args) }),
    warn: (message, ...args) => warn(detail(message, args)),
    info: () => {},
    debug: () => {},
    verbose: () => {},
  }, api.DiagLogLevel.WARN);

  const spanExport = startSpanExport({
    protocol,
    url: tracesUrl(env, endpoint),
    exportTimeoutMs: numberFrom(env, "OTEL_BSP_EXPORT_TIMEOUT", 30000),
    ...batching,
    onFailure: warn,
    onDropping: (waiting) =>
      warn(`${waiting} spans wait for export (OTEL_BSP_MAX_QUEUE_SIZE): dropping new spans until they go`),
  });
  api.context.setGlobalContextManager(new AsyncLocalStorageContextManager());
  api.propagation.setGlobalPropagator(new core.W3CTraceContextPropagator());
  api.trace.setGlobalTracerProvider(
    new NodeTracerProvider({ sampler, ids: new SpanIds(), record: (span) => spanExport.add(span) }),
  );
  let stopping: Promise<void> | undefined;
  return {
    protocol,
    shutdown: (timeoutMs = SHUTDOWN_FLUSH_MS) =>
      withDeadline(stopping ??= spanExport.shutdown(), timeoutMs, "the last span export").catch(() => {}),
  };
}

/** The spec's rule: the signal's own endpoint as is; the general one with `/v1/traces` appended. */
function tracesUrl(env: Env, endpoint: string): string {
  if (nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) !== undefined) return endpoint;
  return `${endpoint.replace(/\/+$/, "")}/v1/traces`;
}

/** `OTEL_TRACES_SAMPLER` (the spec's names) over the SDK's samplers. */
function samplerFrom(env: Env, sdk: typeof import("@opentelemetry/sdk-trace")): Sampler {
  const name = nonEmpty(env.OTEL_TRACES_SAMPLER)?.toLowerCase() ?? "parentbased_always_on";
  const ratio = () => {
    const raw = nonEmpty(env.OTEL_TRACES_SAMPLER_ARG) ?? "1";
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0 || value > 1) {
      throw new ConfigError(`OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1 (got ${JSON.stringify(raw)})`);
    }
    return new sdk.TraceIdRatioBasedSampler(value);
  };
  switch (name) {
    case "always_on":
      return new sdk.AlwaysOnSampler();
    case "always_off":
      return new sdk.AlwaysOffSampler();
    case "traceidratio":
      return ratio();
    case "parentbased_always_on":
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOnSampler() });
    case "parentbased_always_off":
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new sdk.ParentBasedSampler({ root: ratio() });
    default:
      throw new ConfigError(
        `OTEL_TRACES_SAMPLER must be always_on, always_off, traceidratio or parentbased_* of them (got ${name})`,
      );
  }
}

function numberFrom(env: Env, name: string, fallback: number): number {
  const raw = nonEmpty(env[name]);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`${name} must be a non-negative integer (got ${JSON.stringify(raw)})`);
  return Number(raw);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}
