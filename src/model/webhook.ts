/**
 * Webhooks (API.md "Webhooks"): what a subscription is, the message a delivery sends
 * (Standard Webhooks), and the message id every delivery of one event shares. Pure.
 */
import type { LogEvent } from "./patch.ts";

/** The event names of API.md (the SSE event names), and the `type` each becomes in a message. */
export const WEBHOOK_EVENTS = ["artifact-updated", "thread-deleted"] as const;
export type WebhookEventName = (typeof WEBHOOK_EVENTS)[number];
export const MESSAGE_TYPES: Record<WebhookEventName, "artifact.updated" | "thread.deleted"> = {
  "artifact-updated": "artifact.updated",
  "thread-deleted": "thread.deleted",
};

/**
 * `active` delivers; `paused` (by the tenant, or by a receiver's `410 Gone`) waits;
 * `failing` waits after an event was retried for `WEBHOOK_RETRY_HOURS` without a 2xx.
 * Events wait in the log in every state but `active`; none is skipped.
 */
export type WebhookStatus = "active" | "paused" | "failing";

/** A subscription as it is stored (the rollout store is its truth). */
export interface Webhook {
  id: string;
  tenant: string;
  url: string;
  /** null: every thread of the tenant. */
  threads: string[] | null;
  events: WebhookEventName[];
  description: string;
  status: WebhookStatus;
  /** Why it is not `active` (a 410, retries exhausted), for the tenant. */
  statusReason?: string;
  createdAt: string;
  updatedAt: string;
  /** `whsec_<base64>` (Standard Webhooks); shown to the tenant only on create and rotate. */
  secret: string;
}

/** What the API answers for a subscription: everything but the secret (shown only on create and rotate). */
export type WebhookView = Omit<Webhook, "tenant" | "secret">;

export function webhookView(webhook: Webhook): WebhookView {
  const { tenant: _tenant, secret: _secret, ...view } = webhook;
  return view;
}

/** Whether `webhook` follows `threadId`'s events named `event`. */
export function webhookFollows(webhook: Webhook, threadId: string, event: WebhookEventName): boolean {
  return webhook.events.includes(event) && (webhook.threads === null || webhook.threads.includes(threadId));
}

/** The SSE event name of a log event. */
export function eventNameOf(event: LogEvent): WebhookEventName {
  return event.event ?? "artifact-updated";
}

/** One message of one event, the same for every delivery and retry of it. */
export interface WebhookMessage {
  /** `webhook-id`: the tenant, the thread and the seq determine it (seqs never repeat within a thread, across lives). */
  id: string;
  type: "artifact.updated" | "thread.deleted";
  /** The body: `{"type", "timestamp", "data"}`, `data` exactly the SSE event's data. */
  body: string;
}

/**
 * The message of `event` of `threadId`. `timestamp` is when the message was first built
 * for delivery (RFC 3339); the signature's `webhook-timestamp` is each attempt's own.
 */
export async function webhookMessage(
  tenant: string,
  threadId: string,
  event: LogEvent,
  timestamp: Date,
): Promise<WebhookMessage> {
  const type = MESSAGE_TYPES[eventNameOf(event)];
  // data is the SSE event's data verbatim (already JSON): spliced in, not re-serialized.
  const body = `{"type":${JSON.stringify(type)},"timestamp":${
    JSON.stringify(timestamp.toISOString())
  },"data":${event.data}}`;
  return { id: await messageId(tenant, threadId, event.seq), type, body };
}

const encoder = new TextEncoder();

/** `msg_` and 22 base64url characters of SHA-256(tenant NUL thread NUL seq): stable across retries and processes. */
export async function messageId(tenant: string, threadId: string, seq: number): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", encoder.encode(`${tenant}\u0000${threadId}\u0000${seq}`)),
  );
  let binary = "";
  for (const byte of digest.subarray(0, 16)) binary += String.fromCharCode(byte);
  return `msg_${btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")}`;
}

/**
 * When attempt `attempt` (1 = the first retry) of a failed delivery is due: exponential
 * from `baseMs`, doubling, at most an hour, with full jitter over its upper half so many
 * receivers failing together do not come back together.
 */
export function retryDelayMs(attempt: number, baseMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(3_600_000, baseMs * 2 ** Math.min(attempt - 1, 40));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
