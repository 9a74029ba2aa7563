import type { MiddlewareHandler } from "hono";
import { HttpProblem } from "../problem.ts";
import { routeOf } from "../routes.ts";
import type { AppEnv } from "../app.ts";
import type { Authenticator } from "./authenticator.ts";

/**
 * Sets the request's tenant from its bearer token (`Authorization: Bearer`, scheme
 * case-insensitive), or answers 401 with `WWW-Authenticate`. Without an authenticator
 * every request is tenant `local` (loopback only: the runtime enforces it). Public routes
 * and CORS preflights need no token; the events route alone also takes `?access_token=`,
 * and only when no header was sent, so a bad header is not rescued by a good query token.
 *
 * @example
 * app.use(bearerAuth(new Authenticator(settings)));
 */
export function bearerAuth(authenticator: Authenticator | null): MiddlewareHandler<AppEnv> {
  return async function bearerAuth(c, next) {
    if (!authenticator) {
      c.set("tenant", "local");
      return next();
    }
    const route = routeOf(c.req.path);
    if (route?.public || c.req.method === "OPTIONS") return next();
    const token = bearerToken(c.req.header("authorization")) ??
      (route?.queryToken ? c.req.query("access_token") : undefined);
    const tenant = token ? await authenticator.tenantOf(token) : null;
    if (!tenant) {
      // RFC 6750 §3: no token is a bare challenge; a bad one says invalid_token, never why.
      throw new HttpProblem("unauthorized", token ? "the bearer token is not valid" : "a bearer token is required", {
        headers: { "www-authenticate": token ? 'Bearer error="invalid_token"' : "Bearer" },
      });
    }
    c.set("tenant", tenant);
    return next();
  };
}

function bearerToken(header: string | undefined): string | undefined {
  return /^Bearer[ ]+([^\s]+)\s*$/i.exec(header ?? "")?.[1];
}
