/**
 * The shared code's span helpers (src/model/tracing.ts) with a context manager registered,
 * as on Node: `withSpan` makes the span active for what it runs and across its awaits, keeps
 * every other value of the parent context, and its context sets and deletes values as the
 * API's own contexts do.
 */
import { context, createContextKey, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { activeContext, withSpan } from "../../src/model/tracing.ts";

const A = createContextKey("a");
const B = createContextKey("b");
const spanOf = (id: string) => trace.wrapSpanContext({ traceId: "1".repeat(32), spanId: id, traceFlags: 1 });

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
});
afterAll(() => {
  context.disable();
});

describe("withSpan", () => {
  it("makes the span active for what it runs, across awaits, and the parent's values stay readable", async () => {
    const outer = spanOf("a".repeat(16));
    const inner = spanOf("b".repeat(16));
    const parent = trace.setSpan(ROOT_CONTEXT.setValue(A, "kept"), outer);
    const seen = await withSpan(inner, async () => {
      await Promise.resolve();
      await new Promise((resolve) => setImmediate(resolve));
      return { span: trace.getActiveSpan(), a: activeContext().getValue(A) };
    }, parent);
    expect(seen.span).toBe(inner);
    expect(seen.a).toBe("kept");
    expect(trace.getSpan(parent)).toBe(outer);
    expect(trace.getActiveSpan()).toBeUndefined();
  });

  it("gives a context that sets and deletes values as the API's do, leaving itself unchanged", () => {
    const span = spanOf("c".repeat(16));
    withSpan(span, () => {
      const ctx = activeContext();
      const set = ctx.setValue(B, 2);
      expect(set.getValue(B)).toBe(2);
      expect(trace.getSpan(set)).toBe(span);
      expect(ctx.getValue(B)).toBeUndefined();
      const deleted = set.deleteValue(B);
      expect(deleted.getValue(B)).toBeUndefined();
      expect(set.getValue(B)).toBe(2);
      expect(trace.getSpan(ctx.deleteValue(createContextKey("OpenTelemetry Context Key SPAN")))).toBeUndefined();
      const replaced = spanOf("d".repeat(16));
      expect(trace.getSpan(trace.setSpan(ctx, replaced))).toBe(replaced);
      expect(trace.getSpan(ctx)).toBe(span);
    }, ROOT_CONTEXT);
  });
});
