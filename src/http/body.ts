import { ProblemError } from "../model/errors.ts";
import { jsonDepthExceeds, jsonHasNonFiniteNumber, type JsonValue, MAX_JSON_DEPTH, utf8Bytes } from "../model/json.ts";

/** Room for artifactType, identityKey and JSON punctuation around a full-size payload. */
export const BODY_OVERHEAD_BYTES = 16 * 1024;

/**
 * A payload the service may store: nested at most MAX_JSON_DEPTH deep (a deeper one
 * could exhaust a recursive serializer's stack), every number a finite double (so it
 * reads back as sent), and at most `maxBytes` as compact JSON.
 */
export function checkPayload(payload: unknown, maxBytes: number): JsonValue {
  if (jsonDepthExceeds(payload, MAX_JSON_DEPTH)) {
    throw new ProblemError("invalid_request", `payload nests arrays/objects more than ${MAX_JSON_DEPTH} deep`);
  }
  if (jsonHasNonFiniteNumber(payload)) {
    throw new ProblemError(
      "invalid_request",
      "payload has a number outside the range of a 64-bit float (it would not round-trip)",
    );
  }
  if (utf8Bytes(JSON.stringify(payload)) > maxBytes) {
    throw new ProblemError("payload_too_large", `payload serializes to more than ${maxBytes} bytes`);
  }
  return payload as JsonValue;
}

/**
 * Reads a JSON request body without ever holding more than `maxBytes` of it: a
 * declared `Content-Length` over the bound is refused unread, and a body that
 * streams past the bound is cancelled, whatever the header said.
 */
export async function readJsonBody(request: Request, maxBytes: number): Promise<unknown> {
  const contentType = request.headers.get("content-type");
  if (!contentType || !isJsonMediaType(contentType)) {
    throw new ProblemError("unsupported_media_type", "the body must be application/json");
  }
  const declared = request.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared) && Number(declared) > maxBytes) {
    throw tooLarge(maxBytes);
  }
  // With a declared length (already within the bound), HTTP framing bounds the body:
  // read it whole (the Node adapter then skips building a web stream); without one
  // (chunked), count while streaming.
  const text = declared !== null && /^\d+$/.test(declared)
    ? decodeUtf8(new Uint8Array(await request.arrayBuffer()))
    : await readBounded(request, maxBytes);
  if (text.trim() === "") throw new ProblemError("invalid_request", "the request body is empty");
  try {
    return JSON.parse(text);
  } catch {
    throw new ProblemError("invalid_request", "the request body is not valid JSON");
  }
}

/** The media type of a Content-Type value, lowercased, without parameters. */
export function mediaTypeOf(value: string | null | undefined): string {
  return (value?.split(";")[0] ?? "").trim().toLowerCase();
}

/** RFC 7396's media type: a PATCH body in it is a merge patch, not a replacement. */
export const MERGE_PATCH_MEDIA_TYPE = "application/merge-patch+json";

function isJsonMediaType(value: string): boolean {
  const mediaType = mediaTypeOf(value);
  return mediaType === "application/json" || /^application\/[a-z0-9.+-]+\+json$/.test(mediaType);
}

async function readBounded(request: Request, maxBytes: number): Promise<string> {
  if (!request.body) return "";
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge(maxBytes);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return decodeUtf8(bytes);
}

function decodeUtf8(bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ProblemError("invalid_request", "the request body is not valid UTF-8");
  }
}

function tooLarge(maxBytes: number): ProblemError {
  return new ProblemError("payload_too_large", `the request body exceeds ${maxBytes} bytes`);
}
