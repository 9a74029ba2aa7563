import { type Context, isSpanContextValid, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { MiddlewareHandler } from "hono";
import { routeTemplate } from "./route-template.ts";
import { methodLabel, type Metrics } from "../model/metrics.ts";
import { activeContext, tracer, withSpan } from "../model/tracing.ts";
import { requestParentContext } from "./trace-context.ts";

/**
 * Every request measured and traced, around everything else the app does (so the access
 * line and every log line of the request run with its span active):
 * - `requestStarted`, then `requestEnded` with the method, the route template (Hono's
 *   matched route, never the raw path: no ids in labels), the status and the seconds to
 *   the response. A stream counts until its headers; `artifacts_sse_streams` follows it
 *   after that.
 * - the request's server span, the child of the caller's span when it sent a W3C
 *   `traceparent` (or of the runtime's own request span: Deno under OTEL_DENO), named
 *   `METHOD /route/template`. A no-op span unless a tracer provider is registered.
 *
 * @example
 * app.use(observeRequests(metrics));
 */
export function observeRequests(metrics: Metrics): MiddlewareHandler {
  return async function observeRequests(c, next) {
    const start = performance.now();
    metrics.requestStarted();
    const method = methodLabel(c.req.method);
    // A runtime that traces requests itself has made its server span active: ours is its
    // child, not a second server span.
    const kind = trace.getSpan(activeContext()) ? SpanKind.INTERNAL : SpanKind.SERVER;
    const parent = requestParentContext(c.req.raw.headers);
    const span = tracer.startSpan(method, { kind, attributes: { "http.request.method": method } }, parent);
    try {
      // A span that is not recorded (no provider, or not sampled) is made active only to
      // carry a caller's trace on (its id in the logs): a trace that exists nowhere is not
      // worth a context per request (at 10% sampling, nine requests in ten).
      const carried = span.isRecording() || callerTraced(parent);
      await (carried ? withSpan(span, next, parent) : next());
    } finally {
      // "" when no route matched (a 404).
      const route = routeTemplate(c) ?? "";
      const status = c.res.status;
      metrics.requestEnded(method, route, status, (performance.now() - start) / 1000);
      if (span.isRecording()) {
        if (route) {
          span.updateName(`${method} ${route}`);
          span.setAttribute("http.route", route);
        }
        span.setAttribute("http.response.status_code", status);
        // OpenTelemetry's rule for servers: only a 5xx is the server's error.
        if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      }
      span.end();
    }
  };
}

/** Whether `parent` holds a valid span context: a caller's `traceparent`, or the runtime's own request span. */
function callerTraced(parent: Context): boolean {
  const spanContext = trace.getSpanContext(parent);
  return spanContext !== undefined && isSpanContextValid(spanContext);
}
