/**
 * The Node server's tracer (src/runtime/node-tracer.ts) and its batches
 * (src/runtime/span-batches.ts), in process: what a recorded span hands over when it ends
 * (parent, remote parent, root option, attributes, events, links, status, times), what
 * the spec's samplers decide (nothing recorded when off, a sampled parent followed), and
 * how batches go (full, on the schedule, at a flush) and are bounded (spans past the
 * queue dropped, told once per burst, room again once a batch is exported).
 */
import {
  context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Tracer,
} from "@opentelemetry/api";
import { TraceState, W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  ParentBasedSampler,
  type Sampler,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { epochMsOf, NodeTracerProvider } from "../../src/runtime/node-tracer.ts";
import { SpanIds } from "../../src/runtime/span-ids.ts";
import { SpanBatches, type SpanBatchesOptions, SpanList } from "../../src/runtime/span-batches.ts";
import type { SpanRecord } from "../../src/runtime/span-record.ts";

function tracerWith(sampler: Sampler = new ParentBasedSampler({ root: new AlwaysOnSampler() })) {
  const records: SpanRecord[] = [];
  const provider = new NodeTracerProvider({ sampler, ids: new SpanIds(), record: (r) => records.push(r) });
  return { tracer: provider.getTracer("thread-artifacts"), records };
}

/** A context holding a caller's span, as `traceparent` gives it. */
function callerContext(traceparent: string) {
  return new W3CTraceContextPropagator().extract(ROOT_CONTEXT, { traceparent }, {
    get: (carrier, key) => (carrier as Record<string, string>)[key],
    keys: (carrier) => Object.keys(carrier as object),
  });
}

describe("the Node server's tracer", () => {
  it("hands over each ended span once, with its parent, attributes, events, links, status and times", () => {
    const { tracer, records } = tracerWith();
    const before = Date.now();
    const root = tracer.startSpan("POST", { kind: SpanKind.SERVER, attributes: { "http.request.method": "POST" } });
    const child = tracer.startSpan("commit", { attributes: { n: 1 } }, trace.setSpan(ROOT_CONTEXT, root));
    child.setAttribute("n", 2).setAttribute("ignored", undefined).setAttributes({ ok: true, list: ["a", "b"] });
    child.addEvent("retry", { attempt: 2 });
    child.addLink({ context: root.spanContext(), attributes: { why: "group" } });
    child.addLink({ context: { traceId: "0".repeat(32), spanId: "0".repeat(16), traceFlags: 0 } });
    child.setStatus({ code: SpanStatusCode.ERROR, message: "conflict" });
    child.end();
    child.end();
    child.setAttribute("late", 1);
    root.updateName("POST /v1/threads/:threadId/artifacts");
    root.end();
    const after = Date.now();

    expect(records.map((r) => r.name)).toEqual(["commit", "POST /v1/threads/:threadId/artifacts"]);
    const [commit, server] = records as [SpanRecord, SpanRecord];
    expect(server).toMatchObject({
      scope: "thread-artifacts",
      kind: SpanKind.SERVER,
      parentSpanId: undefined,
      traceFlags: TraceFlags.SAMPLED,
      attributes: { "http.request.method": "POST" },
      status: { code: SpanStatusCode.UNSET },
    });
    expect(commit).toMatchObject({
      kind: SpanKind.INTERNAL,
      traceId: server.traceId,
      parentSpanId: server.spanId,
      parentIsRemote: false,
      attributes: { n: 2, ok: true, list: ["a", "b"] },
      status: { code: SpanStatusCode.ERROR, message: "conflict" },
      events: [{ name: "retry", attributes: { attempt: 2 } }],
      links: [{ traceId: server.traceId, spanId: server.spanId, traceFlags: 1, attributes: { why: "group" } }],
    });
    expect(Object.keys(commit.attributes)).not.toContain("ignored");
    expect(Object.keys(commit.attributes)).not.toContain("late");
    expect(commit.traceId.hex).toMatch(/^[0-9a-f]{32}$/);
    expect(commit.spanId.hex).toMatch(/^[0-9a-f]{16}$/);
    // The span context carries the same ids as hex.
    expect(child.spanContext()).toMatchObject({ traceId: commit.traceId.hex, spanId: commit.spanId.hex });
    expect(root.spanContext()).toMatchObject({ traceId: server.traceId.hex, spanId: server.spanId.hex });
    for (const r of records) {
      expect(r.startMs).toBeGreaterThanOrEqual(before);
      expect(r.endMs).toBeGreaterThanOrEqual(r.startMs);
      expect(r.endMs).toBeLessThanOrEqual(after + 1);
    }
    expect(root.isRecording()).toBe(false);
  });

  it("is the child of a caller's remote span, and starts a trace of its own with `root`", () => {
    const { tracer, records } = tracerWith();
    const caller = callerContext("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    tracer.startSpan("remote child", {}, caller).end();
    tracer.startSpan("own root", { root: true }, caller).end();
    expect(records[0]?.traceId.hex).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(records[0]?.parentSpanId?.hex).toBe("b7ad6b7169203331");
    expect(records[0]?.parentIsRemote).toBe(true);
    expect(records[1]?.parentSpanId).toBeUndefined();
    expect(records[1]?.traceId.hex).not.toBe("0af7651916cd43dd8448eb211c80319c");
  });

  it("keeps a frozen attribute set as it is, and copies it before adding to it (the set itself untouched)", () => {
    const { tracer, records } = tracerWith();
    const storeCall = Object.freeze({ "artifacts.store": "blob", "artifacts.store.operation": "get" });
    tracer.startSpan("blob get", { attributes: storeCall }).end();
    const more = tracer.startSpan("blob get", { attributes: storeCall });
    more.setAttribute("error.type", "TypeError");
    more.end();
    // Frozen with a value a span drops: copied, without it; with an array (which may
    // still change): copied.
    const withHole = Object.freeze({ a: 1, b: undefined });
    tracer.startSpan("hole", { attributes: withHole }).end();
    const withArray = Object.freeze({ list: ["a"] });
    tracer.startSpan("array", { attributes: withArray }).end();
    const [shared, copied, hole, array] = records as [SpanRecord, SpanRecord, SpanRecord, SpanRecord];
    expect(array.attributes).not.toBe(withArray);
    expect(array.attributes).toEqual({ list: ["a"] });
    expect(shared.attributes).toBe(storeCall);
    expect(copied.attributes).not.toBe(storeCall);
    expect(copied.attributes).toEqual({ ...storeCall, "error.type": "TypeError" });
    expect(storeCall).toEqual({ "artifacts.store": "blob", "artifacts.store.operation": "get" });
    expect(hole.attributes).toEqual({ a: 1 });
    expect(Object.keys(hole.attributes)).toEqual(["a"]);
  });

  it("keeps the first OK or ERROR, and never lets UNSET replace it", () => {
    const { tracer, records } = tracerWith();
    const ok = tracer.startSpan("ok");
    ok.setStatus({ code: SpanStatusCode.OK });
    ok.setStatus({ code: SpanStatusCode.ERROR, message: "late" });
    ok.end();
    const failed = tracer.startSpan("failed");
    failed.setStatus({ code: SpanStatusCode.ERROR, message: "first" });
    failed.setStatus({ code: SpanStatusCode.UNSET });
    failed.end();
    expect(records.map((r) => r.status)).toEqual([
      { code: SpanStatusCode.OK },
      { code: SpanStatusCode.ERROR, message: "first" },
    ]);
  });

  it("records nothing for a span its sampler drops, and still gives it a valid context to carry", () => {
    const off = tracerWith(new AlwaysOffSampler());
    const span = off.tracer.startSpan("dropped", { kind: SpanKind.SERVER });
    expect(span.isRecording()).toBe(false);
    expect(span.spanContext().traceFlags).toBe(TraceFlags.NONE);
    expect(span.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
    span.setAttribute("x", 1);
    span.end();
    expect(off.records).toEqual([]);
  });

  it("follows a sampled parent where its own ratio would record nothing (parent-based)", () => {
    const { tracer, records } = tracerWith(new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0) }));
    tracer.startSpan("unsampled root").end();
    tracer.startSpan(
      "sampled caller's child",
      {},
      callerContext(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      ),
    ).end();
    tracer.startSpan(
      "unsampled caller's child",
      {},
      callerContext(
        "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
      ),
    ).end();
    expect(records.map((r) => r.name)).toEqual(["sampled caller's child"]);
  });

  it("records a sampled span's children without asking the sampler again, with its trace, tracestate and clock", () => {
    let asked = 0;
    const sampler = new ParentBasedSampler({ root: new AlwaysOnSampler() });
    const { tracer, records } = tracerWith({
      shouldSample: (...args) => {
        asked++;
        return sampler.shouldSample(...args);
      },
      toString: () => "counting",
    });
    const caller = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: "0af7651916cd43dd8448eb211c80319c",
      spanId: "b7ad6b7169203331",
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
      traceState: new TraceState("vendor=1"),
    });
    const root = tracer.startSpan("server", {}, caller);
    const commit = tracer.startSpan("commit", { attributes: { n: 1 } }, trace.setSpan(ROOT_CONTEXT, root));
    const store = tracer.startSpan("store", { kind: SpanKind.CLIENT }, trace.setSpan(ROOT_CONTEXT, commit));
    store.end();
    commit.end();
    root.end();
    expect(asked).toBe(1);
    const [storeRecord, commitRecord, rootRecord] = records;
    expect(commitRecord).toMatchObject({
      name: "commit",
      traceId: rootRecord!.traceId,
      parentSpanId: rootRecord!.spanId,
      parentIsRemote: false,
      traceFlags: TraceFlags.SAMPLED,
      attributes: { n: 1 },
    });
    expect(storeRecord).toMatchObject({ kind: SpanKind.CLIENT, parentSpanId: commitRecord!.spanId });
    expect(commit.spanContext().traceState?.serialize()).toBe("vendor=1");
    expect(commitRecord!.traceState).toBe("vendor=1");
    expect(rootRecord!.parentIsRemote).toBe(true);
    expect(store.spanContext().spanId).not.toBe(commit.spanContext().spanId);
    // One clock a trace: a child never starts before its parent, nor ends after the parent's end is read.
    expect(storeRecord!.startMs).toBeGreaterThanOrEqual(commitRecord!.startMs);
    expect(commitRecord!.startMs).toBeGreaterThanOrEqual(rootRecord!.startMs);
  });

  it("runs startActiveSpan's function with the span active, and passes what it returns", () => {
    const { tracer } = tracerWith();
    const seen: (Span | undefined)[] = [];
    const result = (tracer as Tracer).startActiveSpan("active", { kind: SpanKind.INTERNAL }, (span) => {
      seen.push(span, trace.getSpan(context.active()));
      span.end();
      return 42;
    });
    expect(result).toBe(42);
    // No context manager is registered here: `context.with` runs the function, and the span is its argument.
    expect(seen[0]?.spanContext().spanId).toMatch(/^[0-9a-f]{16}$/);
  });

  it("reads the wall clock once a trace, at its first span here, and the monotonic clock from there", () => {
    const { tracer, records } = tracerWith();
    const wall = 1_700_000_000_000;
    const clock = vi.spyOn(Date, "now").mockReturnValue(wall);
    try {
      const monotonicBefore = performance.now();
      const root = tracer.startSpan("POST");
      // The wall clock steps an hour ahead (a correction) while the trace runs: its spans keep their own time.
      clock.mockReturnValue(wall + 3_600_000);
      const child = tracer.startSpan("commit", {}, trace.setSpan(ROOT_CONTEXT, root));
      child.addEvent("retry");
      child.end();
      root.end();
      // The next trace reads the wall clock again.
      tracer.startSpan("GET").end();
      const elapsed = performance.now() - monotonicBefore;

      const [commit, post, get] = records as [SpanRecord, SpanRecord, SpanRecord];
      for (const time of [post.startMs, commit.startMs, commit.events[0]!.timeMs, commit.endMs, post.endMs]) {
        expect(time).toBeGreaterThanOrEqual(wall);
        expect(time).toBeLessThanOrEqual(wall + elapsed);
      }
      expect(commit.startMs).toBeLessThanOrEqual(commit.events[0]!.timeMs);
      expect(commit.events[0]!.timeMs).toBeLessThanOrEqual(commit.endMs);
      expect(commit.endMs).toBeLessThanOrEqual(post.endMs);
      expect(get.startMs).toBeGreaterThanOrEqual(wall + 3_600_000);
      expect(get.startMs).toBeLessThanOrEqual(wall + 3_600_000 + elapsed);
    } finally {
      clock.mockRestore();
    }
  });

  it("reads a span's times as epoch ms, a Date, [seconds, nanoseconds] or a performance.now() reading", () => {
    // As the SDK: a number below the time origin is a performance.now() reading.
    const later = Math.floor(performance.timeOrigin) + 60_000.5;
    expect(epochMsOf(later)).toBe(later);
    expect(epochMsOf(new Date(1_764_900_000_123))).toBe(1_764_900_000_123);
    expect(epochMsOf([1_764_900_000, 123_500_000])).toBe(1_764_900_000_123.5);
    expect(epochMsOf(10)).toBe(performance.timeOrigin + 10);
  });

  it("keeps at most 128 attributes, 128 events and 128 links on a span", () => {
    const { tracer, records } = tracerWith();
    const span = tracer.startSpan("big");
    for (let i = 0; i < 130; i++) {
      span.setAttribute(`a${i}`, i);
      span.addEvent(`e${i}`);
      span.addLink({ context: span.spanContext() });
    }
    span.setAttribute("a0", "overwritten");
    span.end();
    const [record] = records as [SpanRecord];
    expect(Object.keys(record.attributes)).toHaveLength(128);
    expect(record.attributes.a0).toBe("overwritten");
    expect(record.attributes.a128).toBeUndefined();
    expect(record.events).toHaveLength(128);
    expect(record.links).toHaveLength(128);
  });
});

describe("span batches", () => {
  const span = (i: number) => ({ name: `s${i}` }) as SpanRecord;
  let sent: SpanRecord[][];
  let dropping: number[];
  const batches = (overrides: Partial<SpanBatchesOptions<SpanRecord[]>> = {}) =>
    new SpanBatches({
      maxQueueSize: 8,
      maxExportBatchSize: 3,
      scheduledDelayMs: 5000,
      gather: new SpanList(),
      send: (spans) => sent.push(spans),
      onDropping: (waiting) => dropping.push(waiting),
      ...overrides,
    });
  beforeEach(() => {
    sent = [];
    dropping = [];
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("sends a batch when it is full, and the rest on the schedule", () => {
    const b = batches();
    for (let i = 0; i < 4; i++) b.add(span(i));
    expect(sent.map((batch) => batch.map((s) => s.name))).toEqual([["s0", "s1", "s2"]]);
    vi.advanceTimersByTime(4999);
    expect(sent).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(sent.map((batch) => batch.map((s) => s.name))).toEqual([["s0", "s1", "s2"], ["s3"]]);
  });

  it("sends what it holds on a flush, and nothing when it holds nothing", () => {
    const b = batches();
    b.flush();
    b.add(span(0));
    b.flush();
    b.flush();
    expect(sent.map((batch) => batch.length)).toEqual([1]);
    vi.advanceTimersByTime(10_000);
    expect(sent).toHaveLength(1);
  });

  it("drops spans past the queue (held plus sent and not yet exported), says so once a burst, and takes spans again once a batch is done", () => {
    const b = batches();
    for (let i = 0; i < 8; i++) b.add(span(i));
    expect(sent.map((batch) => batch.length)).toEqual([3, 3]);
    // 8 wait: 6 sent (not yet exported), 2 held. The 9th and 10th are dropped, told once.
    b.add(span(8));
    b.add(span(9));
    expect(b.dropped).toBe(2);
    expect(dropping).toEqual([8]);
    b.exported(3);
    b.add(span(10));
    expect(b.dropped).toBe(2);
    expect(sent.map((batch) => batch.map((s) => s.name))).toEqual([
      ["s0", "s1", "s2"],
      ["s3", "s4", "s5"],
      ["s6", "s7", "s10"],
    ]);
    // Full again: a new burst is told again.
    for (let i = 11; i < 14; i++) b.add(span(i));
    expect(dropping).toEqual([8, 8]);
  });
});
