/** Every problem code of API.md, with the HTTP status it always travels with. */
export const PROBLEM_STATUS = {
  invalid_request: 400,
  unauthorized: 401,
  thread_not_found: 404,
  artifact_not_found: 404,
  webhook_not_found: 404,
  identity_conflict: 409,
  thread_exists: 409,
  idempotency_key_in_flight: 409,
  version_conflict: 412,
  payload_too_large: 413,
  unsupported_media_type: 415,
  thread_full: 422,
  too_many_webhooks: 422,
  idempotency_key_reused: 422,
  rate_limited: 429,
  unavailable: 503,
} as const;

export type ProblemCode = keyof typeof PROBLEM_STATUS;

const TITLES: Record<ProblemCode, string> = {
  invalid_request: "Invalid request",
  unauthorized: "Unauthorized",
  thread_not_found: "Thread not found",
  artifact_not_found: "Artifact not found",
  webhook_not_found: "Webhook not found",
  identity_conflict: "Identity conflict",
  thread_exists: "Thread exists",
  idempotency_key_in_flight: "Idempotency key in flight",
  version_conflict: "Version conflict",
  payload_too_large: "Payload too large",
  unsupported_media_type: "Unsupported media type",
  thread_full: "Thread full",
  too_many_webhooks: "Too many webhooks",
  idempotency_key_reused: "Idempotency key reused",
  rate_limited: "Too many requests",
  unavailable: "Service unavailable",
};

/**
 * A failure the client can act on. Anything else that escapes is a bug or an
 * infrastructure fault and is reported as `unavailable`, never with its message.
 */
export class ProblemError extends Error {
  readonly code: ProblemCode;
  readonly detail: string;
  /** Overrides the code's usual status (404/405 for unknown routes and methods). */
  readonly status: number;
  /** How long the client should wait before trying again (a store down, contention). */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ProblemCode, detail: string, options: { status?: number; retryAfterSeconds?: number } = {}) {
    super(`${code}: ${detail}`);
    this.name = "ProblemError";
    this.code = code;
    this.detail = detail;
    this.status = options.status ?? PROBLEM_STATUS[code];
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  get title(): string {
    return TITLES[this.code];
  }
}

/**
 * One line for a log: the error's name and message, then its causes ("CacheUnavailableError:
 * libSQL cache unavailable: TypeError: fetch failed: ..."), first lines only, so a stack
 * or a multi-line store message never spills into the log.
 */
export function describeError(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current !== undefined && current !== null; depth++) {
    const line = current instanceof Error ? `${current.name}: ${current.message}` : String(current);
    parts.push(line.split("\n")[0] as string);
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(": ");
}
