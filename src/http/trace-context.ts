/**
 * W3C Trace Context (`traceparent`, `tracestate`) on requests in and out, with
 * `@opentelemetry/core`'s propagator used directly rather than the global one, so it
 * works where no SDK registered a propagator: a Worker carries its caller's context into
 * the sequencer whether or not anything traces there.
 */
import { type Context, context, type TextMapGetter, type TextMapSetter, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";

const propagator = new W3CTraceContextPropagator();

const headerGetter: TextMapGetter<Headers> = {
  get: (headers, key) => headers.get(key) ?? undefined,
  keys: (headers) => [...headers.keys()],
};

const recordSetter: TextMapSetter<Record<string, string>> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

/**
 * The context a request's work runs in: the active one when the runtime already traces
 * the request (Deno's `Deno.serve` span under OTEL_DENO: it has read the traceparent
 * itself), else the caller's span from `traceparent`, else the active context as is.
 */
export function requestParentContext(headers: Headers): Context {
  const active = context.active();
  if (trace.getSpan(active) || !headers.has("traceparent")) return active;
  return propagator.extract(active, headers, headerGetter);
}

/**
 * `headers` with the trace context of the active span, or of `fallback` where nothing is
 * active (a runtime without a context manager: workerd), as `traceparent`/`tracestate`.
 */
export function withTraceHeaders(headers: Record<string, string>, fallback?: Context): Record<string, string> {
  const active = context.active();
  propagator.inject(trace.getSpan(active) || !fallback ? active : fallback, headers, recordSetter);
  return headers;
}

/** A request's `traceparent` and `tracestate` as a context to carry further (Workers: into the sequencer). */
export function traceContextOf(headers: Headers): Context {
  return propagator.extract(context.active(), headers, headerGetter);
}
