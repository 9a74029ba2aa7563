/**
 * One delivery attempt of one webhook message (API.md "Webhooks": Standard Webhooks over
 * `POST`): the URL checked again, the message signed, sent with no redirect followed and
 * a deadline, at most 64 KiB of the answer read, and the answer classified. Web-standard
 * (fetch, streams, AbortSignal), so it runs wherever a dispatcher does.
 */
import { Webhook as Signer } from "standardwebhooks";
import type { WebhookMessage } from "../model/webhook.ts";
import type { DeliveryRecord } from "./port.ts";

/**
 * Whether a URL may be called now: the subscriptions side's `checkWebhookUrl` (https
 * only, no private, link-local or loopback address unless allowed), asked before every
 * attempt because what a host resolves to can change after the subscription was checked.
 */
export type CheckUrl = (url: string) => Promise<{ ok: true } | { ok: false; code: string; detail: string }>;

/** Why an attempt got no answer (the `error` of a DeliveryRecord). */
export type AttemptError = "timeout" | "network" | "refused_address" | "aborted";

/** What one attempt came to: a `2xx` acknowledges, a `410` asks to stop, anything else is retried. */
export type AttemptResult =
  | { outcome: "delivered" | "gone"; status: number; seconds: number }
  | { outcome: "failed"; status: number; seconds: number }
  | { outcome: "failed"; error: AttemptError; detail: string; seconds: number };

/** What `GET …/deliveries` lists of one attempt of `seq` of `threadId`, made at `at` (ms). */
export function deliveryRecord(
  message: WebhookMessage,
  threadId: string,
  seq: number,
  attempt: number,
  result: AttemptResult,
  at: number,
): DeliveryRecord {
  return {
    messageId: message.id,
    threadId,
    seq,
    attempt,
    outcome: result.outcome,
    ...("status" in result ? { responseStatus: result.status } : { error: result.error }),
    at: new Date(at).toISOString(),
  };
}

/** What an attempt hands its HTTP client: one `POST`, no redirect followed, a deadline. */
export interface DeliveryRequest {
  method: "POST";
  headers: Record<string, string>;
  body: string;
  redirect: "manual";
  signal: AbortSignal;
}

/**
 * The HTTP client of the attempts: the global `fetch` is one; the Node server passes a
 * cheaper one (runtime/node-delivery-fetch.ts). Only the answer's status is used, and its
 * body is read (bounded) if it has one.
 */
export type DeliveryFetch = (url: string, init: DeliveryRequest) => Promise<Response>;

export interface DeliverOptions {
  /** Asked before each attempt; a refusal fails the attempt with `refused_address` (it is retried). */
  checkUrl: CheckUrl;
  /** Default: the global fetch. */
  fetch?: DeliveryFetch;
  /** The whole attempt's deadline, answer included (ms; API.md: 10 s). */
  timeoutMs?: number;
  /** Bytes of the answer read at most before it is cancelled (default 64 KiB). */
  maxResponseBytes?: number;
  /** The signature's time (`webhook-timestamp`); default: the wall clock. */
  now?: () => number;
  /** Ends the attempt early (the dispatcher stops): it fails with `aborted`. */
  signal?: AbortSignal;
}

export const DELIVERY_TIMEOUT_MS = 10_000;
export const MAX_RESPONSE_BYTES = 64 * 1024;
const USER_AGENT = "thread-artifacts-webhooks/1";

/** Signs and sends `message` to `target` once. Never throws: every failure is a result. */
export async function deliverOnce(
  target: { url: string; secret: string },
  message: WebhookMessage,
  options: DeliverOptions,
): Promise<AttemptResult> {
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  const check = await options.checkUrl(target.url).catch((error: unknown) => ({
    ok: false as const,
    code: "check_failed",
    detail: String(error),
  }));
  if (!check.ok) {
    return {
      outcome: "failed",
      error: "refused_address",
      detail: `${check.code}: ${check.detail}`,
      seconds: seconds(),
    };
  }
  const signedAt = new Date(options.now?.() ?? Date.now());
  const timeout = AbortSignal.timeout(options.timeoutMs ?? DELIVERY_TIMEOUT_MS);
  const signal = options.signal ? AbortSignal.any([timeout, options.signal]) : timeout;
  let response: Response;
  try {
    response = await (options.fetch ?? fetch)(target.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message.id,
        "webhook-timestamp": String(Math.floor(signedAt.getTime() / 1000)),
        "webhook-signature": new Signer(target.secret).sign(message.id, signedAt, message.body),
      },
      body: message.body,
      // A 3xx is an answer like any other non-2xx (a failure), never followed: a redirect
      // must not lead a delivery to an address the URL check would have refused.
      redirect: "manual",
      signal,
    });
  } catch (error) {
    return { outcome: "failed", ...failureOf(error, timeout), seconds: seconds() };
  }
  // The status decides; the body is only drained (bounded) so the connection can be reused.
  await drain(response, options.maxResponseBytes ?? MAX_RESPONSE_BYTES);
  const status = response.status;
  if (status >= 200 && status < 300) return { outcome: "delivered", status, seconds: seconds() };
  if (status === 410) return { outcome: "gone", status, seconds: seconds() };
  // status 0: an opaque redirect (a runtime with browser semantics): still a redirect, still a failure.
  return { outcome: "failed", status, seconds: seconds() };
}

function failureOf(error: unknown, timeout: AbortSignal): { error: AttemptError; detail: string } {
  const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  if (timeout.aborted) return { error: "timeout", detail };
  if (error instanceof Error && error.name === "AbortError") return { error: "aborted", detail };
  return { error: "network", detail };
}

/** Reads at most `max` bytes of the answer, then cancels the rest; errors (the deadline) end it quietly. */
async function drain(response: Response, max: number): Promise<void> {
  const body = response.body;
  if (!body) return;
  const reader = body.getReader();
  let read = 0;
  try {
    while (read < max) {
      const chunk = await reader.read();
      if (chunk.done) return;
      read += chunk.value.byteLength;
    }
  } catch {
    return;
  }
  await reader.cancel().catch(() => {});
}
