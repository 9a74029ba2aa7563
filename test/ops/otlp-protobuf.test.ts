/**
 * The Node server's OTLP/protobuf encoding (src/runtime/otlp-protobuf.ts) against the
 * SDK's own serializer: for any batch of span records (random names, ids, times,
 * attributes of every kind, events, links, statuses, remote parents, several scopes),
 * the bytes are exactly the ones `ProtobufTraceSerializer` writes for the same spans.
 */
import type { Attributes } from "@opentelemetry/api";
import { ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import { resourceFromAttributes } from "@opentelemetry/resources";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { OtlpTraceEncoder } from "../../src/runtime/otlp-protobuf.ts";
import { SpanId, TraceId } from "../../src/runtime/span-ids.ts";
import { type SpanRecord, toReadableSpan } from "../../src/runtime/span-record.ts";

const hexId = (bytes: number) =>
  fc.uint8Array({ minLength: bytes, maxLength: bytes }).map((b) => Buffer.from(b).toString("hex"));
const word = fc.integer({ min: 0, max: 0xffffffff });
/** Ids as the tracer makes them (words, hex when asked) and as a caller's `traceparent` gives them (hex). */
const traceId: fc.Arbitrary<TraceId> = fc.oneof(
  fc.tuple(word, word, word, word).map(([a, b, c, d]) => new TraceId(a, b, c, d)),
  hexId(16).map((hex) => TraceId.fromHex(hex)),
);
const spanId: fc.Arbitrary<SpanId> = fc.oneof(
  fc.tuple(word, word).map(([a, b]) => new SpanId(a, b)),
  hexId(8).map((hex) => SpanId.fromHex(hex)),
);
/** Names and values: ASCII, past 127 bytes (a two-byte length), and beyond ASCII. */
const text = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ minLength: 120, maxLength: 300 }),
  fc.string({ unit: "binary", maxLength: 60 }),
);
const scalar = fc.oneof(
  text,
  fc.boolean(),
  fc.integer(),
  fc.integer({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1 }),
  fc.double({ noNaN: true }),
);
const attributes: fc.Arbitrary<Attributes> = fc.dictionary(
  fc.oneof(fc.constantFrom("artifacts.store", "http.route", "é.key"), fc.string({ maxLength: 30 })),
  fc.oneof(scalar, fc.array(fc.oneof(text, fc.integer()), { maxLength: 4 })),
  { maxKeys: 6 },
);
/**
 * Frozen sets, as the code keeps a store call's: the encoder caches each one's bytes by
 * identity, so the same objects come back span after span.
 */
const frozenSets: Attributes[] = [
  Object.freeze({}),
  Object.freeze({ "artifacts.store": "blob", "artifacts.store.operation": "putIfAbsent" }),
  Object.freeze({
    "artifacts.store": "libsql",
    "artifacts.store.operation": "apply",
    n: 3,
    ok: true,
    list: ["a", "é"],
  }),
];
const spanAttributes = fc.oneof(attributes, fc.constantFrom(...frozenSets));
/** Epoch milliseconds with a sub-millisecond fraction, as `performance.timeOrigin + performance.now()` gives. */
const time = fc.integer({ min: 1_600_000_000_000, max: 2_000_000_000_000 }).chain((ms) =>
  fc.integer({ min: 0, max: 999_999 }).map((nanos) => ms + nanos / 1e6)
);
const traceState = fc.option(fc.constantFrom("vendor=a", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"), {
  nil: undefined,
});

const record: fc.Arbitrary<SpanRecord> = fc.record({
  scope: fc.constantFrom("thread-artifacts", "other"),
  name: text,
  kind: fc.integer({ min: 0, max: 4 }),
  traceId,
  spanId,
  traceFlags: fc.constantFrom(0, 1),
  traceState,
  parentSpanId: fc.option(spanId, { nil: undefined }),
  parentIsRemote: fc.boolean(),
  startMs: time,
  durationMs: fc.double({ min: 0, max: 60_000, noNaN: true }),
  attributes: spanAttributes,
  status: fc.oneof(
    fc.constant({ code: 0 }),
    fc.constant({ code: 1 }),
    text.map((message) => ({ code: 2, message })),
  ),
  links: fc.array(
    fc.record({
      traceId,
      spanId,
      traceFlags: fc.constantFrom(0, 1),
      traceState,
      attributes: fc.option(attributes, { nil: undefined }),
    }),
    { maxLength: 3 },
  ),
  events: fc.array(
    fc.record({ name: text, timeMs: time, attributes: fc.option(attributes, { nil: undefined }) }),
    { maxLength: 3 },
  ),
}).map(({ durationMs, ...rest }) => ({
  ...rest,
  // A root span's parent cannot be remote.
  parentIsRemote: rest.parentSpanId !== undefined && rest.parentIsRemote,
  endMs: rest.startMs + durationMs,
}));

describe("OTLP/protobuf encoding of span records", () => {
  it("writes exactly the bytes of the SDK's ProtobufTraceSerializer for the same spans", () => {
    fc.assert(
      fc.property(attributes, fc.array(record, { minLength: 1, maxLength: 40 }), (resourceAttributes, spans) => {
        const resource = resourceFromAttributes({ "service.name": "thread-artifacts", ...resourceAttributes });
        const scopes = new Map<string, { name: string }>();
        const scopeOf = (name: string) => scopes.get(name) ?? scopes.set(name, { name }).get(name)!;
        const expected = ProtobufTraceSerializer.serializeRequest(
          spans.map((span) => toReadableSpan(span, resource, scopeOf(span.scope))),
        );
        const encoder = new OtlpTraceEncoder(resource.attributes);
        const first = encoder.encode(spans);
        expect(Buffer.from(first).toString("hex")).toBe(Buffer.from(expected!).toString("hex"));
        // Cached keys and scopes from the first batch change nothing in the next one, and
        // the buffer every batch is written in is not the batch handed out: a smaller batch
        // written over it leaves the first one as it was (it may still be in flight).
        expect(Buffer.from(encoder.encode(spans)).toString("hex")).toBe(Buffer.from(expected!).toString("hex"));
        encoder.encode(spans.slice(0, 1).map((span) => ({ ...span, name: `${span.name}!` })));
        expect(Buffer.from(first).toString("hex")).toBe(Buffer.from(expected!).toString("hex"));
      }),
      { numRuns: 300 },
    );
  });

  it("encodes spans one by one as they end: each batch taken is the SDK's bytes for its spans alone, its scopes in their order in it", () => {
    const resource = resourceFromAttributes({ "service.name": "thread-artifacts" });
    // The SDK groups spans by their scope object: one per name.
    const scopes = new Map<string, { name: string }>();
    const scopeOf = (name: string) => scopes.get(name) ?? scopes.set(name, { name }).get(name)!;
    const sdkBytes = (spans: SpanRecord[]) =>
      Buffer.from(
        ProtobufTraceSerializer.serializeRequest(
          spans.map((span) => toReadableSpan(span, resource, scopeOf(span.scope))),
        )!,
      ).toString("hex");
    fc.assert(
      fc.property(
        fc.array(fc.array(record, { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 4 }),
        (batches) => {
          const encoder = new OtlpTraceEncoder(resource.attributes);
          for (const batch of batches) {
            for (const span of batch) encoder.add(span);
            expect(encoder.count).toBe(batch.length);
            expect(Buffer.from(encoder.take()).toString("hex")).toBe(sdkBytes(batch));
            expect(encoder.count).toBe(0);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("grows past its first buffer: a batch of 5,000 spans with long names", () => {
    const resource = resourceFromAttributes({ "service.name": "thread-artifacts" });
    const scope = { name: "thread-artifacts" };
    const spans: SpanRecord[] = Array.from({ length: 5000 }, (_, i) => ({
      scope: "thread-artifacts",
      name: `span ${i} ${"x".repeat(i % 300)}`,
      kind: 1,
      traceId: TraceId.fromHex("0af7651916cd43dd8448eb211c80319c"),
      spanId: SpanId.fromHex(i.toString(16).padStart(16, "0")),
      traceFlags: 1,
      traceState: undefined,
      parentSpanId: undefined,
      parentIsRemote: false,
      startMs: 1_764_900_000_000.123 + i,
      endMs: 1_764_900_000_001.5 + i,
      attributes: { "artifacts.store": "blob", n: i },
      status: { code: 0 },
      links: [],
      events: [],
    }));
    const expected = ProtobufTraceSerializer.serializeRequest(spans.map((s) => toReadableSpan(s, resource, scope)))!;
    const encoded = new OtlpTraceEncoder(resource.attributes).encode(spans);
    expect(encoded.length).toBeGreaterThan(64 * 1024);
    expect(Buffer.from(encoded).equals(Buffer.from(expected))).toBe(true);
  });
});
