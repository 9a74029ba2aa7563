/** The Node tracer's trace and span ids (src/runtime/span-ids.ts): valid W3C ids, random, never all zeros. */
import { isValidSpanId, isValidTraceId } from "@opentelemetry/api";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SpanId, SpanIds, TraceId } from "../../src/runtime/span-ids.ts";

afterEach(() => {
  vi.restoreAllMocks();
});

/** Math.random answering `words` (each an unsigned 32-bit value) in turn. */
function randomWords(...words: number[]) {
  let i = 0;
  vi.spyOn(Math, "random").mockImplementation(() => words[i++ % words.length]! / 0x100000000);
}

describe("span ids", () => {
  it("makes valid lowercase hex ids, all different", () => {
    const ids = new SpanIds();
    const traces = new Set<string>();
    const spans = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const traceId = ids.traceId().hex;
      const spanId = ids.spanId().hex;
      expect(traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(spanId).toMatch(/^[0-9a-f]{16}$/);
      expect(isValidTraceId(traceId) && isValidSpanId(spanId)).toBe(true);
      traces.add(traceId);
      spans.add(spanId);
    }
    expect(traces.size).toBe(10_000);
    expect(spans.size).toBe(10_000);
  });

  it("writes each random word as its eight hex digits, most significant first", () => {
    randomWords(0x01234567, 0x89abcdef, 0xfedcba98, 0x76543210);
    const ids = new SpanIds();
    expect(ids.traceId().hex).toBe("0123456789abcdeffedcba9876543210");
    expect(ids.spanId().hex).toBe("0123456789abcdef");
    randomWords(0x0000000f, 0xf0000000);
    expect(ids.spanId().hex).toBe("0000000ff0000000");
  });

  it("never makes the all-zero (invalid) id", () => {
    randomWords(0);
    const ids = new SpanIds();
    expect(ids.traceId().hex).toBe("00000000000000000000000000000001");
    expect(ids.spanId().hex).toBe("0000000000000001");
  });

  it("keeps ids as words: the hex made from them, and words read back from a caller's hex", () => {
    randomWords(0xdeadbeef, 0x00000001, 0x80000000, 0x0000ffff);
    const ids = new SpanIds();
    const traceId = ids.traceId();
    expect([traceId.w0, traceId.w1, traceId.w2, traceId.w3]).toEqual([0xdeadbeef, 1, 0x80000000, 0xffff]);
    expect(traceId.hex).toBe("deadbeef00000001800000000000ffff");
    const spanId = ids.spanId();
    expect([spanId.high, spanId.low]).toEqual([0xdeadbeef, 1]);
    expect(spanId.hex).toBe("deadbeef00000001");

    const caller = TraceId.fromHex("0AF7651916CD43DD8448EB211C80319C");
    expect([caller.w0, caller.w1, caller.w2, caller.w3]).toEqual([0x0af76519, 0x16cd43dd, 0x8448eb21, 0x1c80319c]);
    expect(caller.hex).toBe("0af7651916cd43dd8448eb211c80319c");
    const parent = SpanId.fromHex("b7ad6b7169203331");
    expect([parent.high, parent.low]).toEqual([0xb7ad6b71, 0x69203331]);
    expect(new SpanId(parent.high, parent.low).hex).toBe("b7ad6b7169203331");
  });
});
