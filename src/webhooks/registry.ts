/**
 * The webhook registry over the rollout's BlobStore (API.md: "Subscriptions are durable
 * like artifacts"): the store is the truth, nothing is kept in memory, so a subscription
 * outlives the process, the cache and every restart, and every process sees the same ones.
 *
 * Key layout:
 *
 * - `tenants/<tenant>/webhooks/<id>.json`: the subscription (`{"v":1, ...Webhook}`, the
 *   secret included), overwritten by `update`.
 * - `tenants/<tenant>/webhooks/<id>/cursors/<threadId>`: `{"seq":n}`, the last seq of the
 *   thread its receiver acknowledged (absent: 0).
 * - `webhooks/<tenant>/<id>`: the index (empty body), outside `tenants/` so that one
 *   listing finds every subscription of every tenant (`all()`, the dispatcher's view), and
 *   one listing of `webhooks/<tenant>/` the tenant's (`list`, the count), without paging
 *   through cursors.
 *
 * Writes are ordered so that a crash between two of them never shows a half-made or
 * half-deleted subscription as live, and never brings a deleted one back:
 *
 * - `create`: the index entry, then the subscription. An entry without its subscription
 *   (a crash between the two) is skipped by `list` and `all` and does not count.
 * - `delete`: the index entry, then the subscription, then its cursors. Cut short, what
 *   is left is either a subscription no listing shows (still readable by id, so a repeated
 *   `DELETE` finishes the job) or orphaned cursors under an id that is never reused.
 * - `update`: the subscription, then a look at its index entry: gone means a delete came
 *   in between, and the subscription is removed again, so an update racing a delete
 *   cannot resurrect it.
 *
 * The store has no conditional overwrite, so two updates of one subscription (the tenant's
 * PATCH, the dispatcher marking it `failing`) that race are last-writer-wins.
 *
 * The per-tenant limit is counted from the index: exact within a process (the creates of
 * one tenant are queued here), approximate across processes (k processes creating for one
 * tenant at the same instant may together exceed it by k - 1).
 */
import type { BlobStore } from "../blob/port.ts";
import { isThreadId } from "../model/ids.ts";
import type { Webhook } from "../model/webhook.ts";
import { isWebhookId } from "../model/webhook-ids.ts";
import { tenantPrefix } from "../rollout/keys.ts";
import { inBatches, inParallel, listAll } from "../rollout/listing.ts";
import type { WebhookRegistry } from "./port.ts";

/** The global index: `webhooks/<tenant>/<id>`. */
export const WEBHOOK_INDEX_PREFIX = "webhooks/";
/** The subscription objects' format. */
const FORMAT = 1;
/** Deletes of one subscription's cursors at a time. */
const DELETE_BATCH = 64;

/** The keys of one subscription (see the layout above). */
export const webhookKeys = {
  subscription: (tenant: string, id: string) => `${tenantPrefix(tenant)}webhooks/${checkId(id)}.json`,
  cursors: (tenant: string, id: string) => `${tenantPrefix(tenant)}webhooks/${checkId(id)}/cursors/`,
  cursor: (tenant: string, id: string, threadId: string) =>
    `${webhookKeys.cursors(tenant, id)}${checkThread(threadId)}`,
  indexOf: (tenant: string) => `${WEBHOOK_INDEX_PREFIX}${tenant}/`,
  index: (tenant: string, id: string) => `${webhookKeys.indexOf(tenant)}${checkId(id)}`,
};

export class BlobWebhookRegistry implements WebhookRegistry {
  readonly #store: BlobStore;
  /** The tail of each tenant's queue of creates (see the limit above). */
  readonly #creates = new Map<string, Promise<void>>();

  constructor(store: BlobStore) {
    this.#store = store;
  }

  create(webhook: Webhook, maxPerTenant: number): Promise<boolean> {
    return this.#queued(webhook.tenant, async () => {
      if ((await this.#count(webhook.tenant, maxPerTenant)) >= maxPerTenant) return false;
      const { tenant, id } = webhook;
      // Ids are 122 random bits: a taken one is a bug, not a race to retry.
      if ((await this.#store.putIfAbsent(webhookKeys.index(tenant, id), "")) === "exists") {
        throw new Error(`webhook id ${id} is taken`);
      }
      await this.#store.put(webhookKeys.subscription(tenant, id), serialize(webhook));
      return true;
    });
  }

  async get(tenant: string, id: string): Promise<Webhook | null> {
    const body = await this.#store.get(webhookKeys.subscription(tenant, id));
    if (body === null) return null;
    const webhook = parse(body);
    // An object is only ever read back under the key it was written to; anything else is not this one.
    return webhook.tenant === tenant && webhook.id === id ? webhook : null;
  }

  async list(tenant: string, options: { after?: string; limit: number }): Promise<Webhook[]> {
    const prefix = webhookKeys.indexOf(tenant);
    const found: Webhook[] = [];
    let startAfter = options.after === undefined ? undefined : webhookKeys.index(tenant, options.after);
    // Entries without a subscription (a create cut short) are skipped: page on until the page is full.
    while (found.length < options.limit) {
      const want = options.limit - found.length;
      const keys = await this.#store.list(
        prefix,
        startAfter === undefined ? { limit: want } : { startAfter, limit: want },
      );
      const webhooks = await inParallel(keys, (key) => this.get(tenant, key.slice(prefix.length)));
      for (const webhook of webhooks) if (webhook) found.push(webhook);
      if (keys.length < want) break;
      startAfter = keys[keys.length - 1];
    }
    return found;
  }

  async update(webhook: Webhook): Promise<void> {
    const { tenant, id } = webhook;
    await this.#store.put(webhookKeys.subscription(tenant, id), serialize(webhook));
    // A delete got in first (its index entry goes first): finish it rather than resurrect the subscription.
    if (!(await this.#store.exists(webhookKeys.index(tenant, id)))) {
      await this.#store.delete(webhookKeys.subscription(tenant, id));
    }
  }

  async delete(tenant: string, id: string): Promise<void> {
    await this.#store.delete(webhookKeys.index(tenant, id));
    await this.#store.delete(webhookKeys.subscription(tenant, id));
    const cursors = await listAll(this.#store, webhookKeys.cursors(tenant, id), undefined);
    await inBatches(cursors, DELETE_BATCH, (key) => this.#store.delete(key));
  }

  async all(): Promise<Webhook[]> {
    const keys = await listAll(this.#store, WEBHOOK_INDEX_PREFIX, undefined);
    const webhooks = await inParallel(keys, (key) => {
      const [tenant, id, extra] = key.slice(WEBHOOK_INDEX_PREFIX.length).split("/");
      if (tenant === undefined || id === undefined || extra !== undefined || !isWebhookId(id)) {
        return Promise.resolve(null);
      }
      return this.get(tenant, id);
    });
    return webhooks.filter((webhook): webhook is Webhook => webhook !== null);
  }

  async cursor(tenant: string, webhookId: string, threadId: string): Promise<number> {
    const body = await this.#store.get(webhookKeys.cursor(tenant, webhookId, threadId));
    if (body === null) return 0;
    const seq = (JSON.parse(body) as { seq?: unknown }).seq;
    if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) {
      throw new Error(`webhook cursor ${webhookId}/${threadId} is not a seq`);
    }
    return seq;
  }

  async setCursor(tenant: string, webhookId: string, threadId: string, seq: number): Promise<void> {
    if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`not a seq: ${seq}`);
    await this.#store.put(webhookKeys.cursor(tenant, webhookId, threadId), JSON.stringify({ seq }));
  }

  /**
   * The tenant's live subscriptions, counted up to `max`: one listing of the index, and
   * only when that reaches `max` a look at whether each entry still has its subscription.
   */
  async #count(tenant: string, max: number): Promise<number> {
    const prefix = webhookKeys.indexOf(tenant);
    const keys = await listAll(this.#store, prefix, undefined);
    if (keys.length < max) return keys.length;
    const live = await inParallel(
      keys,
      (key) => this.#store.exists(webhookKeys.subscription(tenant, key.slice(prefix.length))),
    );
    return live.filter(Boolean).length;
  }

  /** Runs `work` after the tenant's creates before it (the limit's count and write are one step in this process). */
  async #queued<T>(tenant: string, work: () => Promise<T>): Promise<T> {
    const before = this.#creates.get(tenant) ?? Promise.resolve();
    const run = before.then(work);
    const tail = run.then(() => {}, () => {});
    this.#creates.set(tenant, tail);
    try {
      return await run;
    } finally {
      if (this.#creates.get(tenant) === tail) this.#creates.delete(tenant);
    }
  }
}

function serialize(webhook: Webhook): string {
  return JSON.stringify({ v: FORMAT, ...webhook });
}

function parse(body: string): Webhook {
  const { v, ...webhook } = JSON.parse(body) as Webhook & { v?: unknown };
  if (v !== FORMAT) throw new Error(`webhook object of unknown format ${String(v)}`);
  return webhook;
}

/** Ids and threadIds become key segments: only the validated shapes may (the routes validate first). */
function checkId(id: string): string {
  if (!isWebhookId(id)) throw new RangeError(`not a webhook id: ${JSON.stringify(id.slice(0, 80))}`);
  return id;
}

function checkThread(threadId: string): string {
  if (!isThreadId(threadId)) throw new RangeError(`not a threadId: ${JSON.stringify(threadId.slice(0, 80))}`);
  return threadId;
}
