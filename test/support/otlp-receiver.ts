/**
 * A tiny OTLP/HTTP trace receiver for tests: `POST /v1/traces` in `http/json` or
 * `http/protobuf` (gzip or not), every span it got kept as a flat record. The protobuf
 * side is a minimal wire-format reader of the few fields a span tree needs (ids, name,
 * kind, string/int attributes), so no protobuf package is needed.
 */
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** "" for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  /** The resource's `service.name`. */
  service: string;
}

export interface OtlpReceiver {
  /** The base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  url: string;
  spans: ReceivedSpan[];
  /** The content types of the exports received. */
  contentTypes: string[];
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const contentTypes: string[] = [];
  const server = createServer(async (request, response) => {
    if (request.method !== "POST" || request.url !== "/v1/traces") {
      response.writeHead(404).end();
      return;
    }
    const body = await readBody(request);
    const type = request.headers["content-type"] ?? "";
    contentTypes.push(type);
    try {
      spans.push(...(type.includes("json") ? spansOfJson(JSON.parse(body.toString("utf8"))) : spansOfProtobuf(body)));
      response.writeHead(200, { "content-type": type }).end(type.includes("json") ? "{}" : undefined);
    } catch (error) {
      response.writeHead(400).end(String(error));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    contentTypes,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  return request.headers["content-encoding"] === "gzip" ? gunzipSync(body) : body;
}

// --- http/json ---------------------------------------------------------------------------

interface JsonKeyValue {
  key: string;
  value: { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
}

interface JsonTraces {
  resourceSpans?: {
    resource?: { attributes?: JsonKeyValue[] };
    scopeSpans?: {
      spans?: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind: number;
        attributes?: JsonKeyValue[];
      }[];
    }[];
  }[];
}

function spansOfJson(data: JsonTraces): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const resourceSpans of data.resourceSpans ?? []) {
    const service = String(attributesOfJson(resourceSpans.resource?.attributes)["service.name"] ?? "");
    for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
      for (const span of scopeSpans.spans ?? []) {
        out.push({
          traceId: span.traceId,
          spanId: span.spanId,
          parentSpanId: span.parentSpanId ?? "",
          name: span.name,
          kind: span.kind,
          attributes: attributesOfJson(span.attributes),
          service,
        });
      }
    }
  }
  return out;
}

function attributesOfJson(list: JsonKeyValue[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of list ?? []) {
    const v = value.stringValue ?? value.boolValue ?? value.doubleValue ??
      (value.intValue !== undefined ? Number(value.intValue) : undefined);
    if (v !== undefined) out[key] = v;
  }
  return out;
}

// --- http/protobuf -----------------------------------------------------------------------

/** A message's fields by number: varints and 64-bit ones (read as doubles) as numbers, length-delimited ones as bytes. */
type Fields = Map<number, (number | Uint8Array)[]>;

function decode(bytes: Uint8Array): Fields {
  const fields: Fields = new Map();
  let at = 0;
  const varint = (): number => {
    let value = 0;
    let scale = 1;
    for (;;) {
      const byte = bytes[at++] as number;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
  };
  while (at < bytes.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    let value: number | Uint8Array | undefined;
    if (wire === 0) value = varint();
    else if (wire === 1) {
      value = new DataView(bytes.buffer, bytes.byteOffset + at, 8).getFloat64(0, true);
      at += 8;
    } else if (wire === 5) at += 4;
    else if (wire === 2) {
      const length = varint();
      value = bytes.subarray(at, at + length);
      at += length;
    } else throw new Error(`unsupported wire type ${wire}`);
    if (value !== undefined) fields.set(field, [...(fields.get(field) ?? []), value]);
  }
  return fields;
}

const bytesOf = (fields: Fields, n: number): Uint8Array[] => (fields.get(n) ?? []) as Uint8Array[];
const hex = (bytes: Uint8Array | undefined): string => Buffer.from(bytes ?? new Uint8Array()).toString("hex");
const text = (bytes: Uint8Array | undefined): string => Buffer.from(bytes ?? new Uint8Array()).toString("utf8");

function spansOfProtobuf(body: Uint8Array): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  // ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }
  for (const resourceSpans of bytesOf(decode(body), 1).map(decode)) {
    // ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2 }; Resource { attributes = 1 }
    const resource = bytesOf(resourceSpans, 1)[0];
    const service = String(attributesOfProtobuf(resource ? bytesOf(decode(resource), 1) : [])["service.name"] ?? "");
    for (const scopeSpans of bytesOf(resourceSpans, 2).map(decode)) {
      // ScopeSpans { scope = 1; repeated Span spans = 2 }
      for (const span of bytesOf(scopeSpans, 2).map(decode)) {
        // Span { trace_id = 1; span_id = 2; parent_span_id = 4; name = 5; kind = 6; attributes = 9 }
        out.push({
          traceId: hex(bytesOf(span, 1)[0]),
          spanId: hex(bytesOf(span, 2)[0]),
          parentSpanId: hex(bytesOf(span, 4)[0]),
          name: text(bytesOf(span, 5)[0]),
          kind: (span.get(6)?.[0] as number | undefined) ?? 0,
          attributes: attributesOfProtobuf(bytesOf(span, 9)),
          service,
        });
      }
    }
  }
  return out;
}

function attributesOfProtobuf(keyValues: Uint8Array[]): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const keyValue of keyValues.map(decode)) {
    // KeyValue { key = 1; AnyValue value = 2 }; AnyValue { string_value = 1; bool_value = 2; int_value = 3; double_value = 4 }
    const value = bytesOf(keyValue, 2)[0];
    if (!value) continue;
    const any = decode(value);
    const key = text(bytesOf(keyValue, 1)[0]);
    if (any.has(1)) out[key] = text(bytesOf(any, 1)[0]);
    else if (any.has(2)) out[key] = any.get(2)?.[0] === 1;
    else if (any.has(3)) out[key] = any.get(3)?.[0] as number;
    else if (any.has(4)) out[key] = any.get(4)?.[0] as number;
  }
  return out;
}
