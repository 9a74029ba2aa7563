import { ProblemError } from "../model/errors.ts";
import { HttpProblem, problemResponse } from "./problem.ts";
import { REQUEST_ID_HEADER, requestIdOf } from "./request-id.ts";

export interface MetricsEndpointOptions {
  /** `METRICS_TOKEN`: when set, a scrape must send `Authorization: Bearer <token>`. */
  token: string | undefined;
  /**
   * Without a token: whether the endpoint may be open (API.md: only on loopback with no
   * authentication configured). False: `/metrics` is a 404.
   */
  openWithoutToken: boolean;
  /** The exposition, rendered per scrape. */
  render: () => Promise<{ body: string; contentType: string }>;
}

/**
 * `GET /metrics` in front of the app (Node and Deno; Workers have no such route). It sits
 * outside the Hono app on purpose: a scrape is not an API request, so it is not counted in
 * `http_server_*`, not traced, not logged per request, not rate limited and needs no
 * tenant. With a token it is answered 401 (problem+json, `WWW-Authenticate: Bearer`)
 * unless the scrape carries it; without one it is served only where `openWithoutToken`,
 * else it is a 404 (the body of any unknown route's, and without asking for a token first:
 * an API token opens nothing here).
 *
 * @example
 * const fetch = withMetricsEndpoint(app.fetch, { token, openWithoutToken, render: () => metrics.render() });
 */
export function withMetricsEndpoint(
  fetch: (request: Request) => Response | Promise<Response>,
  options: MetricsEndpointOptions,
): (request: Request) => Response | Promise<Response> {
  return function fetchWithMetrics(request) {
    if (!isMetricsPath(request.url) || (request.method !== "GET" && request.method !== "HEAD")) return fetch(request);
    return serveMetrics(request, options);
  };
}

async function serveMetrics(request: Request, options: MetricsEndpointOptions): Promise<Response> {
  const requestId = requestIdOf(request.headers.get(REQUEST_ID_HEADER));
  if (options.token === undefined && !options.openWithoutToken) {
    return problemResponse(
      new ProblemError("invalid_request", `no route ${request.method} /metrics`, { status: 404 }),
      { [REQUEST_ID_HEADER]: requestId },
      requestId,
    );
  }
  if (options.token !== undefined && !sameToken(bearerToken(request.headers.get("authorization")), options.token)) {
    return problemResponse(
      new HttpProblem("unauthorized", "GET /metrics needs the METRICS_TOKEN bearer token", {
        headers: { "www-authenticate": "Bearer" },
      }),
      { [REQUEST_ID_HEADER]: requestId },
      requestId,
    );
  }
  const { body, contentType } = await options.render();
  return new Response(request.method === "HEAD" ? null : body, {
    headers: { "content-type": contentType, "cache-control": "no-store", [REQUEST_ID_HEADER]: requestId },
  });
}

/** Whether the URL's path is exactly `/metrics` (a query may follow), without parsing the URL. */
function isMetricsPath(url: string): boolean {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0 || !url.startsWith("/metrics", start)) return false;
  const end = start + "/metrics".length;
  return url.length === end || url[end] === "?";
}

function bearerToken(header: string | null): string | undefined {
  return /^Bearer[ ]+([^\s]+)\s*$/i.exec(header ?? "")?.[1];
}

/** Compares in time independent of where the strings differ (a token guessed byte by byte learns nothing). */
function sameToken(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  let difference = given.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) difference |= (given.charCodeAt(i) | 0) ^ expected.charCodeAt(i);
  return difference === 0;
}
