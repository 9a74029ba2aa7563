/**
 * How a store port's wrapper measures one call (blob/instrumented.ts, cache/instrumented.ts):
 * its duration and outcome to the metrics port, and, inside a traced request, a client
 * span around it. One helper, so both ports are measured the same way.
 */
import { type Attributes, endSpan, SpanKind, startChildSpan } from "./tracing.ts";
import { failureOutcome, type Metrics, type StoreName } from "./metrics.ts";

/** A port method as it is measured: built once per method, so a call allocates no names or attributes. */
export interface StoreOperation {
  readonly store: StoreName;
  readonly operation: string;
  readonly spanName: string;
  readonly attributes: Attributes;
}

export function storeOperation(store: StoreName, operation: string): StoreOperation {
  return {
    store,
    operation,
    spanName: `${store} ${operation}`,
    // Frozen: a tracer may keep the set as it is instead of copying it per call (node-tracer.ts).
    attributes: Object.freeze({ "artifacts.store": store, "artifacts.store.operation": operation }),
  };
}

/**
 * Runs `call`, recording its duration and outcome. `unmeasured(error)` says a failure was
 * no call at all (a breaker refusing it without asking the store): it is neither timed
 * nor counted.
 */
export async function measureStoreCall<T>(
  metrics: Metrics,
  op: StoreOperation,
  call: () => Promise<T>,
  unmeasured?: (error: unknown) => boolean,
): Promise<T> {
  const span = startChildSpan(op.spanName, SpanKind.CLIENT, op.attributes);
  const start = performance.now();
  try {
    // The span is not made active: a store call starts no spans below it (a leaf of the
    // trace), and a context per call is the larger part of tracing it.
    const result = await call();
    metrics.storeCall(op.store, op.operation, "ok", (performance.now() - start) / 1000);
    if (span) endSpan(span);
    return result;
  } catch (error) {
    if (!unmeasured?.(error)) {
      metrics.storeCall(op.store, op.operation, failureOutcome(error), (performance.now() - start) / 1000);
    }
    if (span) endSpan(span, error);
    throw error;
  }
}
