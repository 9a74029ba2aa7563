import type { MiddlewareHandler } from "hono";
import { logger, writeAccessLine } from "../logging/logger.ts";
import { activeTraceId } from "../model/tracing.ts";
import { routeTemplate } from "./route-template.ts";
import type { AppEnv } from "./app.ts";
import { PROBE_PATHS } from "./routes.ts";

const log = logger("http");

/**
 * One access line per request, at `info`, once its response starts (for an event stream:
 * when the stream opens, not when it ends; `durationMs` is the time to the response
 * head): `method`, `route` (the route template; null for an unknown path), `status`,
 * `durationMs` and `tenant` (once authenticated); the request id comes with every line of
 * the request. Never the raw path or query: `?access_token=` travels in the query, and a
 * misdirected token can end up in a path segment. Probes (/healthz, /livez, /readyz) are
 * not logged.
 *
 * @example
 * app.use(requestId());
 * app.use(accessLog());
 */
export function accessLog(): MiddlewareHandler<AppEnv> {
  return async function accessLog(c, next) {
    if (PROBE_PATHS.has(c.req.path)) return next();
    const started = performance.now();
    await next();
    const fields = {
      method: c.req.method,
      route: routeTemplate(c) ?? null,
      status: c.res.status,
      durationMs: Math.round((performance.now() - started) * 100) / 100,
      tenant: c.get("tenant") as string | undefined,
    };
    const traceId = activeTraceId() ?? c.get("traceId");
    if (!writeAccessLine({ requestId: c.get("requestId"), traceId, ...fields })) log.info("request", fields);
  };
}
