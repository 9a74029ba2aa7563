/**
 * The ports webhooks are built on: the registry (subscriptions and delivery cursors,
 * durable in the rollout store: API.md "Subscriptions are durable like artifacts") and
 * the deliveries (who sends them: a dispatcher in the Node and Deno server process).
 */
import type { Webhook } from "../model/webhook.ts";

export interface WebhookRegistry {
  /** Stores a new subscription; false when the tenant already has `maxPerTenant`. */
  create(webhook: Webhook, maxPerTenant: number): Promise<boolean>;
  get(tenant: string, id: string): Promise<Webhook | null>;
  /** The tenant's subscriptions by id ascending, strictly after `after`, at most `limit`. */
  list(tenant: string, options: { after?: string; limit: number }): Promise<Webhook[]>;
  /** Overwrites a subscription (an update, a status change, a rotated secret). */
  update(webhook: Webhook): Promise<void>;
  /** Removes it and its cursors; later deliveries find it gone and stop. */
  delete(tenant: string, id: string): Promise<void>;
  /** Every subscription of every tenant (the dispatcher's view; one listing, then a read each). */
  all(): Promise<Webhook[]>;
  /** The last seq of `threadId` a receiver acknowledged for this webhook (0: none yet). */
  cursor(tenant: string, webhookId: string, threadId: string): Promise<number>;
  /** Moves the cursor (only after a 2xx, or back for a replay). */
  setCursor(tenant: string, webhookId: string, threadId: string, seq: number): Promise<void>;
}

/** One delivery attempt, as `GET /v1/webhooks/{id}/deliveries` lists it. */
export interface DeliveryRecord {
  messageId: string;
  threadId: string;
  seq: number;
  /** 1 for the first attempt. */
  attempt: number;
  outcome: "delivered" | "failed" | "gone";
  /** The receiver's status, if it answered. */
  responseStatus?: number;
  /** Why it failed without an answer (`timeout`, `network`, `refused_address`, ...). */
  error?: string;
  at: string;
  /** When the next attempt of this event is due, if it failed. */
  nextAttemptAt?: string;
}

export interface WebhookDeliveries {
  /** The most recent attempts of a webhook, newest first. */
  recent(tenant: string, webhookId: string, limit: number): Promise<DeliveryRecord[]>;
  /** Delivers `threadId`'s events after `since` again (the cursor moves back to `since`). */
  replay(tenant: string, webhookId: string, threadId: string, since: number): Promise<void>;
  /** A subscription was created, changed or deleted: the dispatcher looks again. */
  changed(tenant: string, webhookId: string): void;
}
