import type { Context, MiddlewareHandler } from "hono";
import { isSpanContextValid, trace } from "@opentelemetry/api";
import { withLogContext } from "../logging/logger.ts";
import { requestParentContext } from "./trace-context.ts";

/** The header a request id travels in, both ways. */
export const REQUEST_ID_HEADER = "X-Request-Id";

/** What an incoming id must look like to be kept (API.md): 1-128 chars of `[A-Za-z0-9._:-]`. */
const KEPT = /^[A-Za-z0-9._:-]{1,128}$/;

/** The caller's `X-Request-Id` if it is well-formed, else undefined. */
export function keptRequestId(incoming: string | null | undefined): string | undefined {
  return incoming != null && KEPT.test(incoming) ? incoming : undefined;
}

/** The request's id: the caller's `X-Request-Id` when it is well-formed, else a fresh UUID. */
export function requestIdOf(incoming: string | null | undefined): string {
  return incoming != null && KEPT.test(incoming) ? incoming : crypto.randomUUID();
}

/**
 * The id the runtime decided before the app (`app.fetch(request, { requestId })`): the
 * Worker decides it first, so that its calls to the thread's sequencer carry the same one.
 * Passing it beside the request spares a copy of the request and its headers.
 */
function decidedRequestId(env: unknown): string | undefined {
  const decided = typeof env === "object" && env !== null ? (env as { requestId?: unknown }).requestId : undefined;
  return typeof decided === "string" ? decided : undefined;
}

/**
 * Gives every request an id (`c.get("requestId")`): the caller's `X-Request-Id` when it is
 * well-formed, else a fresh UUID. Every log line written while serving the request carries
 * it (`requestId`), problem bodies carry it, and every response, whoever built it (a
 * handler, a stream, the CORS preflight, a 401, the 404 of an unknown route), carries it
 * back as `X-Request-Id`. Register it first, so it wraps everything else.
 *
 * @example
 * app.use(requestId());
 */
export function requestId(): MiddlewareHandler<{ Variables: { requestId: string; traceId?: string } }> {
  return async function requestId(c, next) {
    const id = decidedRequestId(c.env) ?? requestIdOf(c.req.header(REQUEST_ID_HEADER));
    c.set("requestId", id);
    // Without a tracer (nothing registered: no active span) the caller's trace id still
    // belongs on the request's log lines; with one, the server span's (the same trace) wins.
    const traceId = trace.getActiveSpan() ? undefined : callerTraceId(c.req.raw.headers);
    if (traceId) c.set("traceId", traceId);
    await withLogContext(traceId ? { requestId: id, traceId } : { requestId: id }, next);
    setResponseHeader(c, REQUEST_ID_HEADER, id);
  };
}

/** Sets a header on the response already made, copying it first if its headers are immutable (a fetched response). */
function setResponseHeader(c: Context, name: string, value: string): void {
  try {
    c.res.headers.set(name, value);
  } catch {
    c.res = new Response(c.res.body, c.res);
    c.res.headers.set(name, value);
  }
}

/** The trace id of a valid `traceparent`, if the caller sent one. */
function callerTraceId(headers: Headers): string | undefined {
  if (!headers.has("traceparent")) return undefined;
  const span = trace.getSpanContext(requestParentContext(headers));
  return span && isSpanContextValid(span) ? span.traceId : undefined;
}
