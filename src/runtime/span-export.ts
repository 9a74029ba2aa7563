/**
 * The Node server's span export: batches of finished spans (span-batches.ts), one export
 * at a time, through the SDK's OTLP/HTTP export delegate (what its `OTLPTraceExporter`s
 * are made of: the HTTP client, retries, and the settings `OTEL_EXPORTER_OTLP_HEADERS`,
 * `_TIMEOUT`, `_COMPRESSION` and certificates read from the environment), with the
 * records encoded by otlp-protobuf.ts (`http/protobuf`) or by the SDK's JSON serializer
 * (`http/json`). The resource: `service.name` `thread-artifacts` unless `OTEL_SERVICE_NAME`
 * or `OTEL_RESOURCE_ATTRIBUTES` say otherwise.
 */
import { type ExportResult, ExportResultCode } from "@opentelemetry/core";
import { OTLPExporterBase } from "@opentelemetry/otlp-exporter-base";
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from "@opentelemetry/otlp-exporter-base/node-http";
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
import { OtlpTraceEncoder } from "./otlp-protobuf.ts";
import { type SpanRecord, toReadableSpan } from "./span-record.ts";

export interface SpanExportOptions {
  protocol: "http/protobuf" | "http/json";
  url: string;
  /** How long one export may take before it counts as failed (OTEL_BSP_EXPORT_TIMEOUT). */
  exportTimeoutMs: number;
  /** Told of a batch that failed or timed out. */
  onFailure: (message: string) => void;
}

export interface SpanExport {
  /** Exports `spans` after the batches before them; resolves once done with them (exported or failed). */
  export(spans: SpanRecord[]): Promise<void>;
  /** Waits for the batches in flight, then stops the exporter. */
  shutdown(): Promise<void>;
}

export function startSpanExport(options: SpanExportOptions): SpanExport {
  const resource = defaultResource()
    .merge(resourceFromAttributes({ "service.name": "thread-artifacts" }))
    // OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME over it.
    .merge(detectResources({ detectors: [envDetector] }));
  const exporter = new OTLPExporterBase<SpanRecord[]>(
    createOtlpHttpExportDelegate(
      convertLegacyHttpOptions({ url: options.url }, "TRACES", "v1/traces", {
        "Content-Type": options.protocol === "http/json" ? "application/json" : "application/x-protobuf",
      }),
      options.protocol === "http/json" ? jsonSerializer(resource) : protobufSerializer(resource),
      "otlp_http_span_exporter",
      { name: "span", countItems: (records) => records.length },
      undefined,
    ),
  );

  /** One batch; a failure or a timeout rejects (the batch is dropped, as the SDK's processor does). */
  const exportBatch = async (records: SpanRecord[]) => {
    const result = await withDeadline(
      new Promise<ExportResult>((resolve) => exporter.export(records, resolve)),
      options.exportTimeoutMs,
      "the span export",
    );
    if (result.code !== ExportResultCode.SUCCESS) throw result.error ?? new Error("the collector refused it");
  };
  const failed = (error: unknown) =>
    options.onFailure(`span export failed: ${error instanceof Error ? error.message : String(error)}`);

  let chain = Promise.resolve();
  return {
    export(spans) {
      return chain = chain.then(() => exportBatch(spans)).catch(failed);
    },
    shutdown() {
      return chain = chain.then(() => exporter.shutdown()).catch(failed);
    },
  };
}

type TraceSerializer = ISerializer<SpanRecord[], IExportTraceServiceResponse>;

function protobufSerializer(resource: Resource): TraceSerializer {
  const encoder = new OtlpTraceEncoder(resource.attributes);
  return {
    serializeRequest: (records) => encoder.encode(records),
    deserializeResponse: (response) => ProtobufTraceSerializer.deserializeResponse(response),
  };
}

/** JSON through the SDK's serializer, from `ReadableSpan`s (one scope object per tracer name: it groups by identity). */
function jsonSerializer(resource: Resource): TraceSerializer {
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
