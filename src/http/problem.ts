import { ProblemError } from "../model/errors.ts";

/** An RFC 9457 problem+json response for `error`. */
export function problemResponse(error: ProblemError, extraHeaders: Record<string, string> = {}): Response {
  const headers: Record<string, string> = { "content-type": "application/problem+json", ...extraHeaders };
  if (error.retryAfterSeconds !== undefined) headers["retry-after"] = String(error.retryAfterSeconds);
  const body = {
    type: "about:blank",
    title: error.title,
    status: error.status,
    code: error.code,
    detail: error.detail,
  };
  return new Response(JSON.stringify(body), { status: error.status, headers });
}

export function invalid(detail: string): ProblemError {
  return new ProblemError("invalid_request", detail);
}
