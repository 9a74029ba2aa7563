/**
 * OTLP/protobuf encoding of the Node server's span records (an `ExportTraceServiceRequest`
 * of opentelemetry-proto v1): the same bytes as the SDK's `ProtobufTraceSerializer` gives
 * for the same spans (test/ops/otlp-protobuf.test.ts holds it to that), in one pass and
 * with the resource, the scopes and the attribute keys encoded once per process instead
 * of once per span. Why by hand: the SDK's serializer (a size pass, then a write pass,
 * from `ReadableSpan`s built for it) was the largest single cost of tracing a create.
 *
 * Fields written, in the SDK's order:
 *   ExportTraceServiceRequest: 1 resource_spans
 *   ResourceSpans: 1 resource, 2 scope_spans        Resource: 1 attributes
 *   ScopeSpans: 1 scope, 2 spans                     InstrumentationScope: 1 name, 2 version
 *   Span: 1 trace_id, 2 span_id, 3 trace_state, 4 parent_span_id, 5 name, 6 kind,
 *         7 start_time_unix_nano, 8 end_time_unix_nano, 9 attributes,
 *         10 dropped_attributes_count, 11 events, 12 dropped_events_count, 13 links,
 *         14 dropped_links_count, 15 status, 16 flags
 *   Event: 1 time_unix_nano, 2 name, 3 attributes, 4 dropped_attributes_count
 *   Link: 1 trace_id, 2 span_id, 3 trace_state, 4 attributes, 5 dropped_attributes_count, 6 flags
 *   Status: 2 message, 3 code                        KeyValue: 1 key, 2 value
 *   AnyValue: 1 string, 2 bool, 3 int, 4 double, 5 array, 6 kvlist, 7 bytes
 */
import type { Attributes } from "@opentelemetry/api";
import type { SpanId, TraceId } from "./span-ids.ts";
import type { EventRecord, LinkRecord, SpanRecord } from "./span-record.ts";

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;
/** Span flags: the context's is-remote bit is known (and set when the parent is remote). */
const HAS_IS_REMOTE = 0x100;
const IS_REMOTE = 0x200;
const TWO_32 = 4294967296;

const utf8 = new TextEncoder();

/** A growing buffer written front to back; a message's length is fixed up when it ends. */
class Writer {
  bytes: Uint8Array;
  pos = 0;
  #view: DataView;

  constructor(size = 64 * 1024) {
    this.bytes = new Uint8Array(size);
    this.#view = new DataView(this.bytes.buffer);
  }

  ensure(more: number): void {
    if (this.pos + more <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.pos + more) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.bytes.subarray(0, this.pos));
    this.bytes = grown;
    this.#view = new DataView(grown.buffer);
  }

  tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  /** An integer as a varint: negative ones as int64 (ten bytes, two's complement), as the SDK's writer does. */
  varint(value: number): void {
    this.ensure(10);
    const bytes = this.bytes;
    if (value >= 0 && value < TWO_32) {
      let v = value >>> 0;
      while (v > 127) {
        bytes[this.pos++] = (v & 127) | 128;
        v >>>= 7;
      }
      bytes[this.pos++] = v;
      return;
    }
    let low: number;
    let high: number;
    if (value >= 0) {
      low = value >>> 0;
      high = (value / TWO_32) >>> 0;
    } else {
      const abs = -value;
      low = (~(abs >>> 0) + 1) >>> 0;
      high = ~((abs / TWO_32) >>> 0) >>> 0;
      if (low === 0) high = (high + 1) >>> 0;
    }
    while (high > 0 || low > 127) {
      bytes[this.pos++] = (low & 127) | 128;
      low = ((low >>> 7) | (high << 25)) >>> 0;
      high >>>= 7;
    }
    bytes[this.pos++] = low;
  }

  fixed32(value: number): void {
    this.ensure(4);
    this.#view.setUint32(this.pos, value, true);
    this.pos += 4;
  }

  /** Epoch milliseconds (with their fraction) as fixed64 nanoseconds, exactly to the nanosecond. */
  nanos(ms: number): void {
    this.ensure(8);
    const seconds = Math.floor(ms / 1000);
    const nanos = Math.round((ms - seconds * 1000) * 1e6);
    // seconds × 1e9 needs 61 bits: split the seconds so each product stays exact in a double.
    const secondsLow = seconds % 65536;
    const secondsHigh = Math.floor(seconds / 65536);
    const low = secondsLow * 1e9 + nanos;
    const high = secondsHigh * 1e9;
    const lowWord = (low % TWO_32) + (high % 65536) * 65536;
    this.#view.setUint32(this.pos, lowWord % TWO_32, true);
    this.#view.setUint32(
      this.pos + 4,
      Math.floor(low / TWO_32) + Math.floor(high / 65536) + Math.floor(lowWord / TWO_32),
      true,
    );
    this.pos += 8;
  }

  double(value: number): void {
    this.ensure(8);
    this.#view.setFloat64(this.pos, value, true);
    this.pos += 8;
  }

  raw(bytes: Uint8Array): void {
    const length = bytes.length;
    this.ensure(length);
    // A loop beats `set` for the few bytes of a key or a scope; the resource may be longer.
    if (length > 64) {
      this.bytes.set(bytes, this.pos);
      this.pos += length;
      return;
    }
    const target = this.bytes;
    let pos = this.pos;
    for (let i = 0; i < length; i++) target[pos++] = bytes[i]!;
    this.pos = pos;
  }

  /** A length-delimited string (length, then UTF-8). */
  string(value: string): void {
    const length = value.length;
    if (length < 128) {
      // ASCII, the usual case, is copied as is; anything else takes the encoder.
      this.ensure(length + 1);
      const start = this.pos;
      const bytes = this.bytes;
      let i = 0;
      for (; i < length; i++) {
        const code = value.charCodeAt(i);
        if (code >= 128) break;
        bytes[start + 1 + i] = code;
      }
      if (i === length) {
        bytes[start] = length;
        this.pos = start + 1 + length;
        return;
      }
    }
    this.ensure(length * 3 + 5);
    const start = this.begin();
    this.pos += utf8.encodeInto(value, this.bytes.subarray(this.pos)).written;
    this.end(start);
  }

  /** A length-delimited field of a trace id's 16 bytes. */
  traceId(id: TraceId): void {
    this.ensure(17);
    const view = this.#view;
    const pos = this.pos;
    this.bytes[pos] = 16;
    view.setUint32(pos + 1, id.w0);
    view.setUint32(pos + 5, id.w1);
    view.setUint32(pos + 9, id.w2);
    view.setUint32(pos + 13, id.w3);
    this.pos = pos + 17;
  }

  /** A length-delimited field of a span id's 8 bytes. */
  spanId(id: SpanId): void {
    this.ensure(9);
    const pos = this.pos;
    this.bytes[pos] = 8;
    this.#view.setUint32(pos + 1, id.high);
    this.#view.setUint32(pos + 5, id.low);
    this.pos = pos + 9;
  }

  /** Starts a length-delimited message: one byte is kept for its length. */
  begin(): number {
    this.ensure(1);
    return this.pos++;
  }

  /** Ends the message begun at `start`: its length goes in front, the body moved if it needs more than a byte. */
  end(start: number): void {
    const length = this.pos - start - 1;
    if (length < 128) {
      this.bytes[start] = length;
      return;
    }
    const size = varintSize(length);
    this.ensure(size - 1);
    this.bytes.copyWithin(start + size, start + 1, this.pos);
    const end = this.pos + size - 1;
    this.pos = start;
    this.varint(length);
    this.pos = end;
  }

  finish(): Uint8Array {
    return this.bytes.slice(0, this.pos);
  }
}

function varintSize(value: number): number {
  let size = 1;
  while (value >= 128) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

/** Fields 1–3 of a Span and of a Link alike: trace_id, span_id, trace_state. */
function writeIds(writer: Writer, traceId: TraceId, spanId: SpanId, traceState: string | undefined): void {
  writer.tag(1, LENGTH_DELIMITED);
  writer.traceId(traceId);
  writer.tag(2, LENGTH_DELIMITED);
  writer.spanId(spanId);
  if (traceState) {
    writer.tag(3, LENGTH_DELIMITED);
    writer.string(traceState);
  }
}

function writeAttributes(writer: Writer, field: number, attributes: Attributes, keys: KeyCache): void {
  for (const key in attributes) {
    // Own keys only, as the SDK's serializer (Object.keys): not what a prototype adds.
    if (!Object.hasOwn(attributes, key)) continue;
    const value = attributes[key];
    if (value === undefined || value === null) continue;
    writer.tag(field, LENGTH_DELIMITED);
    const encoded = Array.isArray(value) ? undefined : keys.keyValue(key, value as string | number | boolean);
    if (encoded) {
      writer.raw(encoded);
      continue;
    }
    writeKeyValue(writer, keys.field(key), value);
  }
}

/** A length-prefixed KeyValue message: `1: key` (its field, encoded), then `2: value`. */
function writeKeyValue(writer: Writer, keyField: Uint8Array, value: unknown): void {
  const keyValue = writer.begin();
  writer.raw(keyField);
  writer.tag(2, LENGTH_DELIMITED);
  const anyValue = writer.begin();
  writeAnyValue(writer, value);
  writer.end(anyValue);
  writer.end(keyValue);
}

function writeAnyValue(writer: Writer, value: unknown): void {
  if (typeof value === "string") {
    writer.tag(1, LENGTH_DELIMITED);
    writer.string(value);
  } else if (typeof value === "boolean") {
    writer.tag(2, VARINT);
    writer.varint(value ? 1 : 0);
  } else if (typeof value === "number") {
    // As the SDK: any integer int64 holds is an int (doubles past 2^53 are integers too).
    if (Number.isInteger(value) && value >= -(2 ** 63) && value < 2 ** 63) {
      writer.tag(3, VARINT);
      writer.varint(value);
    } else {
      writer.tag(4, FIXED64);
      writer.double(value);
    }
  } else if (Array.isArray(value)) {
    writer.tag(5, LENGTH_DELIMITED);
    const array = writer.begin();
    for (const item of value) {
      writer.tag(1, LENGTH_DELIMITED);
      const element = writer.begin();
      if (item !== undefined && item !== null) writeAnyValue(writer, item);
      writer.end(element);
    }
    writer.end(array);
  }
}

/** Values of one key cached at most: a key's values are a route, a status, a store's operation (a few each). */
const VALUES_PER_KEY = 64;
/** A string value longer than this is encoded each time (it is no label: a message, say). */
const CACHED_STRING_LENGTH = 128;

/**
 * Attribute keys and values as they are encoded, each once: a key's `1: key` field, and
 * the whole length-prefixed KeyValue of a key with a scalar value (the spans of a create
 * carry the same few pairs request after request).
 */
class KeyCache {
  readonly #fields = new Map<string, Uint8Array>();
  readonly #keyValues = new Map<string, Map<string | number | boolean, Uint8Array>>();

  field(key: string): Uint8Array {
    let bytes = this.#fields.get(key);
    if (!bytes) {
      const writer = new Writer(key.length * 3 + 8);
      writer.tag(1, LENGTH_DELIMITED);
      writer.string(key);
      bytes = writer.finish();
      // Keys are code's constants; a runaway set of them is not cached.
      if (this.#fields.size < 1024) this.#fields.set(key, bytes);
    }
    return bytes;
  }

  /** `key` = `value` as a length-prefixed KeyValue message, or undefined when it is not cached (nor will be). */
  keyValue(key: string, value: string | number | boolean): Uint8Array | undefined {
    let values = this.#keyValues.get(key);
    const cached = values?.get(value);
    if (cached) return cached;
    if (typeof value === "string" && value.length > CACHED_STRING_LENGTH) return undefined;
    if (!values) {
      if (this.#keyValues.size >= 1024) return undefined;
      this.#keyValues.set(key, values = new Map());
    }
    if (values.size >= VALUES_PER_KEY) return undefined;
    const writer = new Writer(key.length * 3 + CACHED_STRING_LENGTH * 3 + 32);
    writeKeyValue(writer, this.field(key), value);
    const bytes = writer.finish();
    values.set(value, bytes);
    return bytes;
  }
}

/** One scope's spans of the batch being gathered: its `1: scope` field, then its spans' `2: spans` fields. */
interface ScopeSpans {
  readonly scope: Uint8Array;
  readonly spans: Writer;
}

/**
 * Encodes each span as it ends (`add`) and hands out the batch's request (`take`): a span
 * is bytes from its end on, so a batch holds one buffer per scope instead of the records
 * of hundreds of spans, which outlived young-generation collections (copied by each one
 * until the batch went) while it filled.
 */
export class OtlpTraceEncoder {
  /** `1: resource` of ResourceSpans, encoded once. */
  readonly #resource: Uint8Array;
  /** Each scope's spans, its buffer kept from batch to batch. */
  readonly #scopes = new Map<string, ScopeSpans>();
  /** The scopes of the batch being gathered, in the order they first appear in it (as the SDK groups them). */
  readonly #batch: ScopeSpans[] = [];
  readonly #keys = new KeyCache();
  readonly #names = new Map<string, Uint8Array>();
  /** Per frozen set, its bytes, or null for a set not cached (it holds an array). */
  readonly #frozen = new WeakMap<Attributes, Uint8Array | null>();
  #count = 0;

  constructor(resourceAttributes: Attributes) {
    const writer = new Writer();
    writer.tag(1, LENGTH_DELIMITED);
    const resource = writer.begin();
    writeAttributes(writer, 1, resourceAttributes, this.#keys);
    writer.tag(2, VARINT);
    writer.varint(0);
    writer.end(resource);
    this.#resource = writer.finish();
  }

  /** Spans added since the last `take`. */
  get count(): number {
    return this.#count;
  }

  /** Encodes `span` into the batch being gathered. */
  add(span: SpanRecord): void {
    const group = this.#scopeSpans(span.scope);
    if (group.spans.pos === 0) this.#batch.push(group);
    this.#span(group.spans, span);
    this.#count++;
  }

  /** The `ExportTraceServiceRequest` of the spans added since the last `take` (a buffer of its own); starts a new batch. */
  take(): Uint8Array {
    let resourceSpansLength = this.#resource.length;
    for (const group of this.#batch) {
      const length = group.scope.length + group.spans.pos;
      resourceSpansLength += 1 + varintSize(length) + length;
    }
    const out = new Writer(1 + varintSize(resourceSpansLength) + resourceSpansLength);
    out.tag(1, LENGTH_DELIMITED);
    out.varint(resourceSpansLength);
    out.raw(this.#resource);
    for (const group of this.#batch) {
      out.tag(2, LENGTH_DELIMITED);
      out.varint(group.scope.length + group.spans.pos);
      out.raw(group.scope);
      out.raw(group.spans.bytes.subarray(0, group.spans.pos));
      group.spans.pos = 0;
    }
    this.#batch.length = 0;
    this.#count = 0;
    return out.bytes;
  }

  /** An `ExportTraceServiceRequest` of `spans` (added to, and taken with, whatever was added before). */
  encode(spans: readonly SpanRecord[]): Uint8Array {
    for (const span of spans) this.add(span);
    return this.take();
  }

  /** A span name as a length-prefixed string, encoded once (names are the code's: a route, a store call). */
  #name(name: string): Uint8Array {
    let bytes = this.#names.get(name);
    if (!bytes) {
      const writer = new Writer(name.length * 3 + 8);
      writer.string(name);
      bytes = writer.finish();
      if (this.#names.size < 256) this.#names.set(name, bytes);
    }
    return bytes;
  }

  /**
   * A frozen attribute set's `9: attributes` fields, encoded once per set: the code's
   * constant sets (a store call's) come back span after span, and frozen, never change.
   * Not a set holding an array (the array itself may still change): undefined.
   */
  #frozenAttributes(attributes: Attributes): Uint8Array | undefined {
    let bytes = this.#frozen.get(attributes);
    if (bytes === undefined) {
      if (Object.values(attributes).some(Array.isArray)) {
        bytes = null;
      } else {
        const writer = new Writer(256);
        writeAttributes(writer, 9, attributes, this.#keys);
        bytes = writer.finish();
      }
      this.#frozen.set(attributes, bytes);
    }
    return bytes ?? undefined;
  }

  #scopeSpans(name: string): ScopeSpans {
    let group = this.#scopes.get(name);
    if (!group) {
      const writer = new Writer(name.length * 3 + 16);
      writer.tag(1, LENGTH_DELIMITED);
      const scope = writer.begin();
      writer.tag(1, LENGTH_DELIMITED);
      writer.string(name);
      writer.end(scope);
      // A batch of 512 spans is ~100 KB: the first scope's buffer grows to it once.
      group = { scope: writer.finish(), spans: new Writer(this.#scopes.size === 0 ? 128 * 1024 : 4 * 1024) };
      this.#scopes.set(name, group);
    }
    return group;
  }

  #span(writer: Writer, span: SpanRecord): void {
    writer.tag(2, LENGTH_DELIMITED);
    const start = writer.begin();
    writeIds(writer, span.traceId, span.spanId, span.traceState);
    if (span.parentSpanId) {
      writer.tag(4, LENGTH_DELIMITED);
      writer.spanId(span.parentSpanId);
    }
    writer.tag(5, LENGTH_DELIMITED);
    writer.raw(this.#name(span.name));
    // OTLP's SpanKind counts from UNSPECIFIED = 0; the API's from INTERNAL = 0.
    writer.tag(6, VARINT);
    writer.varint(span.kind + 1);
    writer.tag(7, FIXED64);
    writer.nanos(span.startMs);
    writer.tag(8, FIXED64);
    writer.nanos(span.endMs);
    const attributes = span.attributes;
    const frozen = Object.isFrozen(attributes) ? this.#frozenAttributes(attributes) : undefined;
    if (frozen) writer.raw(frozen);
    else writeAttributes(writer, 9, attributes, this.#keys);
    writer.tag(10, VARINT);
    writer.varint(0);
    for (const event of span.events) this.#event(writer, event);
    writer.tag(12, VARINT);
    writer.varint(0);
    for (const link of span.links) this.#link(writer, link);
    writer.tag(14, VARINT);
    writer.varint(0);
    writer.tag(15, LENGTH_DELIMITED);
    const status = writer.begin();
    if (span.status.message) {
      writer.tag(2, LENGTH_DELIMITED);
      writer.string(span.status.message);
    }
    writer.tag(3, VARINT);
    writer.varint(span.status.code);
    writer.end(status);
    writer.tag(16, FIXED32);
    writer.fixed32((span.traceFlags & 255) | HAS_IS_REMOTE | (span.parentIsRemote ? IS_REMOTE : 0));
    writer.end(start);
  }

  #event(writer: Writer, event: EventRecord): void {
    writer.tag(11, LENGTH_DELIMITED);
    const start = writer.begin();
    writer.tag(1, FIXED64);
    writer.nanos(event.timeMs);
    writer.tag(2, LENGTH_DELIMITED);
    writer.string(event.name);
    if (event.attributes) writeAttributes(writer, 3, event.attributes, this.#keys);
    writer.tag(4, VARINT);
    writer.varint(0);
    writer.end(start);
  }

  #link(writer: Writer, link: LinkRecord): void {
    writer.tag(13, LENGTH_DELIMITED);
    const start = writer.begin();
    writeIds(writer, link.traceId, link.spanId, link.traceState);
    if (link.attributes) writeAttributes(writer, 4, link.attributes, this.#keys);
    writer.tag(5, VARINT);
    writer.varint(0);
    writer.tag(6, FIXED32);
    writer.fixed32((link.traceFlags & 255) | HAS_IS_REMOTE);
    writer.end(start);
  }
}
