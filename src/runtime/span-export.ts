/**
 * The Node server's span export: batches of finished spans (span-batches.ts), one export
 * at a time, through the SDK's OTLP export delegate (its bookkeeping, and the settings
 * `OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`, `_COMPRESSION` and certificates read from the
 * environment) over our POST (otlp-http-post.ts: one write, the SDK's retry rules), made
 * on a thread of its own (otlp-post-thread.ts: an HTTP client on the event loop slows
 * every request's own event-emitter and socket code).
 * `http/protobuf` encodes each span into its batch as it ends (otlp-protobuf.ts);
 * `http/json` keeps the records and the SDK's JSON serializer encodes a batch when it goes.
 * The resource: `service.name` `thread-artifacts` unless `OTEL_SERVICE_NAME` or
 * `OTEL_RESOURCE_ATTRIBUTES` say otherwise.
 */
import { type ExportResult, ExportResultCode } from "@opentelemetry/core";
import { createOtlpNetworkExportDelegate, OTLPExporterBase } from "@opentelemetry/otlp-exporter-base";
import { createOtlpHttpExporterMetrics } from "@opentelemetry/otlp-exporter-base/node-http";
import { type ISerializer, JsonTraceSerializer, ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import {
  defaultResource,
  detectResources,
  envDetector,
  type Resource,
  resourceFromAttributes,
} from "@opentelemetry/resources";
import type { IExportTraceServiceResponse } from "@opentelemetry/otlp-transformer";
import { withDeadline } from "../model/deadline.ts";
import { exporterSettings } from "./otlp-post-messages.ts";
import { otlpPostThread } from "./otlp-post-thread.ts";
import { OtlpTraceEncoder } from "./otlp-protobuf.ts";
import { SpanBatches, type SpanGather, SpanList } from "./span-batches.ts";
import { type SpanRecord, toReadableSpan } from "./span-record.ts";

export interface SpanExportOptions {
  protocol: "http/protobuf" | "http/json";
  url: string;
  /** How long one export may take before it counts as failed (OTEL_BSP_EXPORT_TIMEOUT). */
  exportTimeoutMs: number;
  /** OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_SCHEDULE_DELAY. */
  maxQueueSize: number;
  maxExportBatchSize: number;
  scheduledDelayMs: number;
  /** Told of a batch that failed or timed out. */
  onFailure: (message: string) => void;
  /** Told once when spans start being dropped (again): the queue is full. */
  onDropping: (waiting: number) => void;
}

/** The Node server's span export. */
export interface SpanExport {
  /** Takes a span that has ended into the next batch (or drops it, the queue full). */
  add(span: SpanRecord): void;
  /** Sends what is gathered, waits for the batches in flight, then stops the exporter. */
  shutdown(): Promise<void>;
}

/** A protobuf batch as the delegate takes it: the request's bytes, and how many spans they hold (its metrics count them). */
interface EncodedSpans {
  bytes: Uint8Array;
  count: number;
}

/**
 * `http/protobuf` gathers each span encoded as it ends (otlp-protobuf.ts); `http/json`
 * gathers records and has the SDK's serializer encode a batch when it goes.
 */
export function startSpanExport(options: SpanExportOptions): SpanExport {
  const resource = defaultResource()
    .merge(resourceFromAttributes({ "service.name": "thread-artifacts" }))
    // OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME over it.
    .merge(detectResources({ detectors: [envDetector] }));
  if (options.protocol === "http/json") {
    const exporter = exporterOf(options, jsonSerializer(resource), (records) => records.length);
    return exportThrough(
      options,
      new SpanList(),
      (batch: SpanRecord[], done) => exporter.export(batch, done),
      exporter,
    );
  }
  const exporter = exporterOf(options, protobufSerializer, (encoded) => encoded.count);
  return exportThrough(
    options,
    new OtlpTraceEncoder(resource.attributes),
    (bytes: Uint8Array, done, count) => exporter.export({ bytes, count }, done),
    exporter,
  );
}

/** The SDK's exporter over its export delegate and our POST, for batches of type `T`. */
function exporterOf<T>(
  options: SpanExportOptions,
  serializer: ISerializer<T, IExportTraceServiceResponse>,
  countItems: (batch: T) => number,
): OTLPExporterBase<T> {
  const settings = {
    url: options.url,
    contentType: options.protocol === "http/json" ? "application/json" : "application/x-protobuf",
  };
  const configuration = exporterSettings(settings);
  return new OTLPExporterBase<T>(
    createOtlpNetworkExportDelegate(
      configuration,
      serializer,
      createOtlpHttpExporterMetrics(
        "otlp_http_span_exporter",
        { name: "span", countItems },
        configuration.url,
        undefined,
      ),
      otlpPostThread(configuration, settings),
    ),
  );
}

/**
 * Batches gathered in `gather`, exported one at a time through `send`; a failure or a
 * timeout drops the batch (as the SDK's processor does), told to `onFailure`.
 */
function exportThrough<B>(
  options: SpanExportOptions,
  gather: SpanGather<B>,
  send: (batch: B, done: (result: ExportResult) => void, count: number) => void,
  exporter: { shutdown(): Promise<void> },
): SpanExport {
  const exportBatch = async (batch: B, count: number) => {
    const result = await withDeadline(
      new Promise<ExportResult>((resolve) => send(batch, resolve, count)),
      options.exportTimeoutMs,
      "the span export",
    );
    if (result.code !== ExportResultCode.SUCCESS) throw result.error ?? new Error("the collector refused it");
  };
  const failed = (error: unknown) =>
    options.onFailure(`span export failed: ${error instanceof Error ? error.message : String(error)}`);

  let chain = Promise.resolve();
  const batches: SpanBatches<B> = new SpanBatches({
    maxQueueSize: options.maxQueueSize,
    maxExportBatchSize: options.maxExportBatchSize,
    scheduledDelayMs: options.scheduledDelayMs,
    gather,
    send(batch, count) {
      chain = chain.then(() => exportBatch(batch, count)).catch(failed).then(() => batches.exported(count));
    },
    onDropping: options.onDropping,
  });
  return {
    add: (span) => batches.add(span),
    shutdown() {
      batches.flush();
      return chain = chain.then(() => exporter.shutdown()).catch(failed);
    },
  };
}

/** The encoder's bytes as they are; a response as the SDK reads one. */
const protobufSerializer: ISerializer<EncodedSpans, IExportTraceServiceResponse> = {
  serializeRequest: (encoded) => encoded.bytes,
  deserializeResponse: (response) => ProtobufTraceSerializer.deserializeResponse(response),
};

/** JSON through the SDK's serializer, from `ReadableSpan`s (one scope object per tracer name: it groups by identity). */
function jsonSerializer(resource: Resource): ISerializer<SpanRecord[], IExportTraceServiceResponse> {
  const scopes = new Map<string, { name: string }>();
  const scopeOf = (name: string) => {
    let scope = scopes.get(name);
    if (!scope) scopes.set(name, scope = { name });
    return scope;
  };
  return {
    serializeRequest: (records) =>
      JsonTraceSerializer.serializeRequest(
        records.map((record) => toReadableSpan(record, resource, scopeOf(record.scope))),
      ),
    deserializeResponse: (response) => JsonTraceSerializer.deserializeResponse(response),
  };
}
