/**
 * The metrics port: the events the service reports, whatever records them (Prometheus on
 * Node and Deno, Workers Analytics Engine on Workers, nothing by default). Shared code
 * calls these methods and knows no metric name, no library and no runtime; which family
 * each event feeds is the recorder's business (docs/decisions.md "Metrics and traces").
 *
 * Every argument is bounded: no method takes a thread id, an artifact id, a tenant or a
 * raw path, so no recorder can build an unbounded label set from them. Every method is
 * cheap and never throws (a recorder that fails must not fail a request).
 */
export interface Metrics {
  /** A request came in (answered by `requestEnded`). */
  requestStarted(): void;
  /**
   * A request was answered: its method (one of `HTTP_METHODS`, else `_OTHER`), its route
   * template (`/v1/threads/:threadId/artifacts`; empty when no route matched), its status
   * and the seconds until its response (a stream's: until its headers).
   */
  requestEnded(method: string, route: string, status: number, seconds: number): void;
  /** A commit was put (created) with this many patches. */
  committed(patches: number): void;
  /** A commit's put-if-absent found its key taken: another writer won the seq. */
  commitConflict(): void;
  /** One call to a store port finished (`operation` is the port's method name). */
  storeCall(store: StoreName, operation: string, outcome: StoreOutcome, seconds: number): void;
  /** An event stream started; the handle counts what it sends and ends it. */
  streamOpened(kind: StreamKind): StreamMetrics;
  /** The cache answered a call (true), or was found unavailable (false). */
  cacheUp(up: boolean): void;
  /** A thread's cache was brought up to its rollout (found behind, then repaired). */
  cacheRepaired(): void;
  /** A request was refused with a 429 by this per-tenant limit (nothing was written). */
  rateLimited(limit: LimitName): void;
  /** A stream was ended because its client stopped reading (it resumes from its last event id). */
  streamStalled(kind: StreamKind): void;
  /**
   * A webhook delivery attempt ended (API.md "Webhooks"): `delivered` (a 2xx), `gone` (a
   * 410: the webhook is paused) or `failed` (any other answer, or none), and the seconds
   * it took (the URL check, the request and reading at most 64 KiB of the answer).
   */
  webhookDelivered(outcome: WebhookOutcome, seconds: number): void;
  /** A delivery attempt was a retry (not the first attempt at its event). */
  webhookRetried(): void;
  /**
   * What the process's webhook dispatcher knows is waiting: events not yet acknowledged
   * over the webhooks it delivers, and how long ago the oldest of them became known (0: none).
   */
  webhookBacklog(events: number, oldestSeconds: number): void;
}

/** One open event stream. */
export interface StreamMetrics {
  eventsSent(count: number): void;
  /** Called once, when the stream ends for any reason. */
  closed(): void;
}

export type StoreName = "blob" | "libsql";
/** `timeout`: the call outlived its deadline (or its runtime's); `error`: anything else it threw. */
export type StoreOutcome = "ok" | "error" | "timeout";
/** The per-tenant limits of API.md "Rate limits": the write and read buckets, the open-stream cap. */
export type LimitName = "writes" | "reads" | "streams";
/** `thread`: one thread's stream; `many`: `GET /v1/events`. */
export type StreamKind = "thread" | "many";
/** How a webhook delivery attempt ended. */
export type WebhookOutcome = "delivered" | "failed" | "gone";

/** The request methods a label may carry; any other is `_OTHER` (OpenTelemetry's rule: clients choose methods). */
export const HTTP_METHODS: ReadonlySet<string> = new Set([
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "PATCH",
  "DELETE",
  "OPTIONS",
]);

/** `method` as a bounded label value. */
export function methodLabel(method: string): string {
  return HTTP_METHODS.has(method) ? method : "_OTHER";
}

const closedStream: StreamMetrics = { eventsSent() {}, closed() {} };

/** Records nothing: the default wherever no recorder is wired (tests, `METRICS=off`). */
export const noMetrics: Metrics = {
  requestStarted() {},
  requestEnded() {},
  committed() {},
  commitConflict() {},
  storeCall() {},
  streamOpened: () => closedStream,
  cacheUp() {},
  cacheRepaired() {},
  rateLimited() {},
  streamStalled() {},
  webhookDelivered() {},
  webhookRetried() {},
  webhookBacklog() {},
};

/**
 * A failed store call's outcome: `timeout` when it (or what it was caused by) is a
 * deadline (`DeadlineError` of model/deadline.ts, or a runtime's `TimeoutError` from
 * `AbortSignal.timeout`), `error` otherwise.
 */
export function failureOutcome(error: unknown): StoreOutcome {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    if (current.name === "DeadlineError" || current.name === "TimeoutError") return "timeout";
    current = current.cause;
  }
  return "error";
}
