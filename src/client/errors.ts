/** An RFC 9457 problem the API answered with. */
export class ArtifactsApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: string;
  /** The answer's `Retry-After`, in ms, when it had one in seconds (`429`, `503`). */
  readonly retryAfterMs: number | undefined;

  constructor(status: number, code: string, detail: string, retryAfterMs?: number) {
    super(`${status} ${code}: ${detail}`);
    this.name = "ArtifactsApiError";
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The problem+json body of `response` as an ArtifactsApiError (any body: a proxy's HTML page too). */
export async function toError(response: Response): Promise<ArtifactsApiError> {
  let code = "http_error";
  let detail = response.statusText;
  try {
    const body = (await response.json()) as { code?: unknown; detail?: unknown };
    if (typeof body.code === "string") code = body.code;
    if (typeof body.detail === "string") detail = body.detail;
  } catch {
    // not a problem+json body
  }
  // Only the delay-seconds form: an HTTP date needs a trusted clock, and the API sends seconds.
  const retryAfter = response.headers.get("retry-after")?.trim();
  const retryAfterMs = retryAfter && /^\d{1,6}$/.test(retryAfter) ? Number(retryAfter) * 1000 : undefined;
  return new ArtifactsApiError(response.status, code, detail, retryAfterMs);
}

/**
 * Whether sending the same request again may succeed: the request never got an answer
 * (a network error), or the answer says "not now" (`5xx`, `408`, or a repeat of an
 * `Idempotency-Key` whose first request is still in flight).
 */
export function isTransient(error: unknown): boolean {
  if (!(error instanceof ArtifactsApiError)) return !isAbort(error);
  return error.status >= 500 || error.status === 408 || error.code === "idempotency_key_in_flight";
}

export function isAbort(error: unknown): boolean {
  return (error as { name?: unknown } | null)?.name === "AbortError";
}
