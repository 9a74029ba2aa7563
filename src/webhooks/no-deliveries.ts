import type { DeliveryRecord, WebhookDeliveries, WebhookRegistry } from "./port.ts";

/**
 * The deliveries of a runtime that sends none yet: no attempts to list, a replay only
 * moves the cursor back (so a dispatcher that starts later delivers from there), changes
 * wake no one. The dispatcher (webhooks/dispatcher.ts) replaces it where it runs.
 */
export class NoDeliveries implements WebhookDeliveries {
  readonly #registry: WebhookRegistry;

  constructor(registry: WebhookRegistry) {
    this.#registry = registry;
  }

  async recent(_tenant: string, _webhookId: string, _limit: number): Promise<DeliveryRecord[]> {
    return [];
  }

  /** Never forward: a cursor past an event that was not delivered would skip it. */
  async replay(tenant: string, webhookId: string, threadId: string, since: number): Promise<void> {
    const cursor = await this.#registry.cursor(tenant, webhookId, threadId);
    if (since < cursor) await this.#registry.setCursor(tenant, webhookId, threadId, since);
  }

  changed(_tenant: string, _webhookId: string): void {}
}
