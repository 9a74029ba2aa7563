import type { MiddlewareHandler } from "hono";
import type { Metrics } from "../model/metrics.ts";
import type { RateLimitName, TenantAdmission } from "../limits/port.ts";
import type { AppEnv } from "./app.ts";
import { HttpProblem } from "./problem.ts";
import { routeOf } from "./routes.ts";

/**
 * API.md "Rate limits": after authentication and before any store is touched, a
 * request takes a token from its tenant's bucket (`writes` for POST, PATCH and DELETE,
 * `reads` for GET and HEAD) and an event stream also a place under the tenant's open-stream
 * cap (a many-threads stream is one). Refused: `429 rate_limited` with `Retry-After` and
 * the IETF `RateLimit-Policy` / `RateLimit` headers, nothing written. Admitted: the same
 * headers on the answer, so a client can pace itself. Public routes (health, metrics,
 * OpenAPI, the page) and CORS preflights are never limited.
 *
 * A stream's lease is the stream handler's to give back when the stream ends
 * (`streamClosed` in the context); an answer that is no stream gives it back here.
 *
 * @example
 * app.use(rateLimits(new InProcessAdmission({ limitsOf, leaseMs }), metrics));
 */
export function rateLimits(admission: TenantAdmission, metrics: Metrics): MiddlewareHandler<AppEnv> {
  return async function rateLimits(c, next) {
    const route = routeOf(c.req.path);
    if (!route || route.public || c.req.method === "OPTIONS") return next();
    const tenant = c.get("tenant");
    const limit: RateLimitName = c.req.method === "GET" || c.req.method === "HEAD" ? "reads" : "writes";
    const taken = await admission.take(tenant, limit);
    if (!taken.admitted) throw refusal(metrics, limit, taken.retryAfterSeconds, taken.headers);
    if (!route.stream) {
      await next();
      setHeaders(c.res, taken.headers);
      return;
    }
    const slot = await admission.openStream(tenant);
    if (!slot.admitted) throw refusal(metrics, "streams", slot.retryAfterSeconds, slot.headers);
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      // Never fails the stream's end: a lease not given back lapses.
      Promise.resolve(admission.closeStream(tenant, slot.lease)).catch(() => {});
    };
    c.set("streamClosed", close);
    try {
      await next();
    } finally {
      // Only a stream that started owns its lease; any other answer (a 4xx, an error) frees it now.
      if (!isEventStream(c.res)) close();
    }
    setHeaders(c.res, { ...taken.headers, ...slot.headers });
  };
}

function refusal(
  metrics: Metrics,
  limit: "writes" | "reads" | "streams",
  retryAfterSeconds: number,
  headers: Readonly<Record<string, string>>,
): HttpProblem {
  metrics.rateLimited(limit);
  const detail = limit === "streams"
    ? "this tenant has as many event streams open as it may; close one or retry later"
    : `this tenant's ${limit} rate limit is exhausted; retry after ${retryAfterSeconds} s`;
  return new HttpProblem("rate_limited", detail, { retryAfterSeconds, headers: { ...headers } });
}

function isEventStream(response: Response): boolean {
  return response.status === 200 && (response.headers.get("content-type") ?? "").startsWith("text/event-stream");
}

function setHeaders(response: Response, headers: Readonly<Record<string, string>>): void {
  for (const name in headers) response.headers.set(name, headers[name] as string);
}
