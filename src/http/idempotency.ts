import type { Context } from "hono";
import { ProblemError } from "../model/errors.ts";
import { IDEMPOTENCY_KEY, type IdempotencyMark } from "../model/idempotency.ts";
import { base64url } from "./base64url.ts";
import { mediaTypeOf } from "./body.ts";

/**
 * The write's `Idempotency-Key` (IETF httpapi draft), with the fingerprint a repeat must
 * match: the method, the path as sent, `If-Match`, the media type and the body as parsed
 * (re-serialized, so whitespace does not matter). Absent header: undefined. A malformed
 * key is a 400 before anything is read or written.
 */
export async function idempotencyOf(c: Context, body?: unknown): Promise<IdempotencyMark | undefined> {
  const key = c.req.header("idempotency-key");
  if (key === undefined) return undefined;
  if (!IDEMPOTENCY_KEY.test(key)) {
    throw new ProblemError("invalid_request", "Idempotency-Key must be 1-255 printable ASCII characters");
  }
  const request = [
    c.req.method,
    new URL(c.req.url).pathname,
    c.req.header("if-match") ?? "",
    body === undefined ? "" : mediaTypeOf(c.req.header("content-type")),
    body === undefined ? "" : JSON.stringify(body),
  ].join("\n");
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(request));
  return { key, fingerprint: base64url(new Uint8Array(digest)) };
}
