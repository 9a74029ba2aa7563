/**
 * Spans through `@opentelemetry/api` alone: no-ops until a runtime registers a tracer
 * provider (Node with OTEL_EXPORTER_OTLP_ENDPOINT, Deno with OTEL_DENO=true), so shared
 * code pays a context lookup per store call and nothing more when tracing is off.
 */
import {
  type Attributes,
  type Context,
  context,
  isSpanContextValid,
  type Link,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";

export { SpanKind };
export type { Attributes, Context, Link, Span };

/** Every span of the service comes from this tracer (a proxy: it follows a provider registered later). */
export const tracer = trace.getTracer("thread-artifacts");

/**
 * A span under `parent` (default: the active context), or undefined when `parent` holds
 * no recording span. Store calls and commits are traced only inside a traced request:
 * work of no request (a feed's poll, a background repair) makes no root spans of its own.
 */
export function startChildSpan(
  name: string,
  kind: SpanKind,
  attributes: Attributes,
  parent: Context = context.active(),
): Span | undefined {
  if (!trace.getSpan(parent)?.isRecording()) return undefined;
  return tracer.startSpan(name, { kind, attributes }, parent);
}

/** The context code runs in now (a request's, with its span, where a context manager is registered). */
export function activeContext(): Context {
  return context.active();
}

/** The span context `ctx` holds (to link to it), if any. */
export function spanContextOf(ctx: Context): SpanContext | undefined {
  return trace.getSpanContext(ctx);
}

/** Ends `span`, marked failed by `error` if given (its type only: messages may carry keys and ids). */
export function endSpan(span: Span, error?: unknown): void {
  if (error !== undefined) {
    const type = error instanceof Error ? error.name : typeof error;
    span.setAttribute("error.type", type);
    span.setStatus({ code: SpanStatusCode.ERROR, message: type });
  }
  span.end();
}

/** Runs `fn` with `span` active (so the spans of what it calls are its children). */
export function withSpan<T>(span: Span, fn: () => T, parent: Context = context.active()): T {
  return context.with(new LinkedContext(parent, SPAN_KEY, span), fn);
}

/**
 * The key `trace.setSpan` files a context's span under: the API makes its keys with
 * `Symbol.for`, so that every copy of it (and a runtime's own, as Deno's) reads the same.
 */
const SPAN_KEY = Symbol.for("OpenTelemetry Context Key SPAN");

/**
 * A context that is `parent` with one value set. Why not the API's `setValue`: its
 * context copies the parent's whole map and makes three closures each time, and a traced
 * request makes two (its span, its commit's) on the path of every write.
 */
class LinkedContext implements Context {
  readonly #parent: Context;
  readonly #key: symbol;
  readonly #value: unknown;

  constructor(parent: Context, key: symbol, value: unknown) {
    this.#parent = parent;
    this.#key = key;
    this.#value = value;
  }

  getValue(key: symbol): unknown {
    return key === this.#key ? this.#value : this.#parent.getValue(key);
  }

  setValue(key: symbol, value: unknown): Context {
    return new LinkedContext(this, key, value);
  }

  /** A value of undefined is no value, to the API as to every context. */
  deleteValue(key: symbol): Context {
    return new LinkedContext(this, key, undefined);
  }
}

/**
 * Runs `work` outside any request's trace: work shared by many requests or outliving
 * them (a thread's feed, the background repair timer) must not hang under the request
 * that happened to start it, or that request's trace would grow for as long as it runs.
 */
export function detached<T>(work: () => T): T {
  return context.with(ROOT_CONTEXT, work);
}

/** The active span's trace id (a request's, the caller's if it sent a traceparent), or undefined. */
export function activeTraceId(): string | undefined {
  const span = trace.getActiveSpan();
  if (!span) return undefined;
  const spanContext = span.spanContext();
  // A recording span's ids are its tracer's own, valid by making: only a carried context
  // (a caller's, a non-recording span's) needs the check, two regular expressions a request.
  return span.isRecording() || isSpanContextValid(spanContext) ? spanContext.traceId : undefined;
}
