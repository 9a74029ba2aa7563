import type { Context } from "hono";
import { routePath } from "hono/route";

/**
 * The template of the route a request matched (`/v1/threads/:threadId/artifacts`), also
 * when a middleware answered before its handler ran (a 401); undefined for an unknown path.
 */
export function routeTemplate(c: Context): string | undefined {
  // The last route matched is the most specific one: the handler's (middleware paths are `*`).
  const template = routePath(c, -1);
  return template.startsWith("/") && !template.includes("*") ? template : undefined;
}
