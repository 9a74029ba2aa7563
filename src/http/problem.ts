import { type ProblemCode, ProblemError } from "../model/errors.ts";
import { REQUEST_ID_HEADER, requestIdOf } from "./request-id.ts";

/** A ProblemError that must travel with HTTP headers of its own (`WWW-Authenticate` on a 401). */
export class HttpProblem extends ProblemError {
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    code: ProblemCode,
    detail: string,
    options: { status?: number; retryAfterSeconds?: number; headers?: Record<string, string> } = {},
  ) {
    super(code, detail, options);
    this.headers = options.headers ?? {};
  }
}

/**
 * An RFC 9457 problem+json response for `error`; with the request's id (`requestId`, API.md),
 * which the request-id middleware also sets as the `X-Request-Id` header.
 */
export function problemResponse(
  error: ProblemError,
  extraHeaders: Record<string, string> = {},
  requestId?: string,
): Response {
  const headers: Record<string, string> = {
    "content-type": "application/problem+json",
    ...(error instanceof HttpProblem ? error.headers : {}),
    ...extraHeaders,
  };
  if (error.retryAfterSeconds !== undefined) headers["retry-after"] = String(error.retryAfterSeconds);
  const body = {
    type: "about:blank",
    title: error.title,
    status: error.status,
    code: error.code,
    detail: error.detail,
    ...(requestId !== undefined ? { requestId } : {}),
  };
  return new Response(JSON.stringify(body), { status: error.status, headers });
}

/**
 * What a runtime answers every request with when its configuration is unusable (a
 * Worker or a Deno function without authentication, a bad variable): the reason goes
 * to the log once, never to the client. No app runs then, so the request id is set here.
 */
export function misconfiguredResponse(request: Request): Response {
  const requestId = requestIdOf(request.headers.get(REQUEST_ID_HEADER));
  return problemResponse(
    new ProblemError("unavailable", "the service is misconfigured", { retryAfterSeconds: 60 }),
    { [REQUEST_ID_HEADER]: requestId },
    requestId,
  );
}

export function invalid(detail: string): ProblemError {
  return new ProblemError("invalid_request", detail);
}
