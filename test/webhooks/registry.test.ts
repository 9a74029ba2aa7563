/**
 * BlobWebhookRegistry on the memory and the fs BlobStore (the way test/blob/contract.ts
 * runs one suite on every adapter): the key layout, the limit, listing, cursors, deletes
 * and what a crash between two writes leaves.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import type { BlobStore } from "../../src/blob/port.ts";
import type { Webhook } from "../../src/model/webhook.ts";
import { newWebhookId, newWebhookSecret } from "../../src/model/webhook-ids.ts";
import { BlobWebhookRegistry, webhookKeys } from "../../src/webhooks/registry.ts";

const STORES: Array<[string, () => Promise<{ store: BlobStore; cleanup?: () => Promise<void> }>]> = [
  ["memory", async () => ({ store: new MemoryBlobStore() })],
  [
    "fs",
    async () => {
      const root = await mkdtemp(join(tmpdir(), "webhook-registry-"));
      return { store: new FsBlobStore(root), cleanup: () => rm(root, { recursive: true, force: true }) };
    },
  ],
];

function webhook(tenant: string, overrides: Partial<Webhook> = {}): Webhook {
  const at = new Date().toISOString();
  return {
    id: newWebhookId(),
    tenant,
    url: "https://hooks.example.com/in",
    threads: null,
    events: ["artifact-updated", "thread-deleted"],
    description: "",
    status: "active",
    createdAt: at,
    updatedAt: at,
    secret: newWebhookSecret(),
    ...overrides,
  };
}

async function allKeys(store: BlobStore): Promise<string[]> {
  return store.list("", { limit: 10_000 });
}

describe.each(STORES)("BlobWebhookRegistry on %s", (_name, make) => {
  let store: BlobStore;
  let cleanup: (() => Promise<void>) | undefined;
  let registry: BlobWebhookRegistry;

  beforeEach(async () => {
    ({ store, cleanup } = await make());
    registry = new BlobWebhookRegistry(store);
  });

  afterEach(async () => {
    await cleanup?.();
  });

  it("stores a subscription at its keys and reads it back whole, secret included", async () => {
    const w = webhook("acme", { threads: ["t1", "t2"], description: "héllo 🚀", statusReason: "why" });
    expect(await registry.create(w, 20)).toBe(true);
    expect(await allKeys(store)).toEqual([`tenants/acme/webhooks/${w.id}.json`, `webhooks/acme/${w.id}`].sort());
    expect(await store.get(`webhooks/acme/${w.id}`)).toBe("");
    expect(JSON.parse((await store.get(`tenants/acme/webhooks/${w.id}.json`)) as string)).toEqual({ v: 1, ...w });
    expect(await registry.get("acme", w.id)).toEqual(w);
    expect(await registry.get("other", w.id)).toBeNull();
    expect(await registry.get("acme", newWebhookId())).toBeNull();
  });

  it("holds a tenant to its limit exactly (concurrent creates in one process included); other tenants are apart", async () => {
    const results = await Promise.all(Array.from({ length: 8 }, () => registry.create(webhook("acme"), 5)));
    expect(results.filter(Boolean)).toHaveLength(5);
    expect(await registry.list("acme", { limit: 100 })).toHaveLength(5);
    expect((await store.list("webhooks/acme/")).length).toBe(5);
    expect(await registry.create(webhook("other"), 5)).toBe(true);
    expect(await registry.create(webhook("acme"), 0)).toBe(false);
    // A refused create wrote nothing.
    expect((await allKeys(store)).length).toBe(12);
  });

  it("lists a tenant's subscriptions by id ascending, page by page", async () => {
    const created: Webhook[] = [];
    for (let i = 0; i < 7; i++) {
      const w = webhook("acme");
      await registry.create(w, 20);
      created.push(w);
    }
    await registry.create(webhook("acme-2"), 20);
    const ids = created.map((w) => w.id).sort();
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await registry.list("acme", { limit: 3, ...(after ? { after } : {}) });
      seen.push(...page.map((w) => w.id));
      if (page.length < 3) break;
      after = page[page.length - 1]?.id;
    }
    expect(seen).toEqual(ids);
    expect((await registry.all()).map((w) => w.id).sort()).toEqual(
      [...ids, ...(await registry.list("acme-2", { limit: 5 })).map((w) => w.id)].sort(),
    );
  });

  it("lists in creation order: ids are time-ordered", async () => {
    const times = [5_000, 1_000, 3_000, 2_000, 4_000];
    for (const at of times) {
      await registry.create(webhook("acme", { id: newWebhookId(at), description: String(at) }), 20);
    }
    const listed = await registry.list("acme", { limit: 10 });
    expect(listed.map((w) => Number(w.description))).toEqual([...times].sort((a, b) => a - b));
  });

  it("keeps cursors per webhook and thread; update overwrites the subscription and keeps them", async () => {
    const w = webhook("acme");
    await registry.create(w, 20);
    expect(await registry.cursor("acme", w.id, "t1")).toBe(0);
    await registry.setCursor("acme", w.id, "t1", 7);
    await registry.setCursor("acme", w.id, "t:2.x", 3);
    await registry.setCursor("acme", w.id, "t1", 9);
    expect(await registry.cursor("acme", w.id, "t1")).toBe(9);
    expect(await registry.cursor("acme", w.id, "t:2.x")).toBe(3);
    expect(await store.get(`tenants/acme/webhooks/${w.id}/cursors/t1`)).toBe('{"seq":9}');
    const paused = { ...w, status: "paused" as const, url: "https://other.example.com/" };
    await registry.update(paused);
    expect(await registry.get("acme", w.id)).toEqual(paused);
    expect(await registry.cursor("acme", w.id, "t1")).toBe(9);
    await expect(registry.setCursor("acme", w.id, "t1", -1)).rejects.toThrow(RangeError);
  });

  it("delete removes the subscription, its index entry and every cursor; the tenant's others stay", async () => {
    const w = webhook("acme");
    const kept = webhook("acme");
    await registry.create(w, 20);
    await registry.create(kept, 20);
    for (let i = 0; i < 30; i++) await registry.setCursor("acme", w.id, `thread-${i}`, i);
    await registry.setCursor("acme", kept.id, "t", 1);
    await registry.delete("acme", w.id);
    expect(await registry.get("acme", w.id)).toBeNull();
    expect(await registry.cursor("acme", w.id, "thread-3")).toBe(0);
    expect(await allKeys(store)).toEqual(
      [
        webhookKeys.subscription("acme", kept.id),
        webhookKeys.cursor("acme", kept.id, "t"),
        webhookKeys.index("acme", kept.id),
      ]
        .sort(),
    );
    expect((await registry.all()).map((x) => x.id)).toEqual([kept.id]);
    // A delete of what is not there is a no-op.
    await registry.delete("acme", w.id);
  });

  it("an update racing a delete does not bring the subscription back", async () => {
    const w = webhook("acme");
    await registry.create(w, 20);
    await registry.delete("acme", w.id);
    await registry.update({ ...w, description: "late" });
    expect(await registry.get("acme", w.id)).toBeNull();
    expect(await allKeys(store)).toEqual([]);
  });

  it("skips an index entry a crash left without its subscription, and does not count it", async () => {
    const dangling = newWebhookId();
    await store.put(webhookKeys.index("acme", dangling), "");
    const w = webhook("acme");
    expect(await registry.create(w, 1)).toBe(true);
    expect((await registry.list("acme", { limit: 10 })).map((x) => x.id)).toEqual([w.id]);
    expect((await registry.all()).map((x) => x.id)).toEqual([w.id]);
    expect(await registry.create(webhook("acme"), 1)).toBe(false);
    // A page that ends on dangling entries goes on to the next live one.
    const page = await registry.list("acme", { limit: 1, after: "wh_00000000000000000000000000000000" });
    expect(page.map((x) => x.id)).toEqual([w.id]);
  });

  it("refuses ids and threadIds that are not safe key segments", async () => {
    await expect(registry.get("acme", "../x")).rejects.toThrow(RangeError);
    await expect(registry.cursor("acme", newWebhookId(), "../../etc")).rejects.toThrow(RangeError);
    await expect(registry.create(webhook("acme", { id: "wh_../x" }), 20)).rejects.toThrow(RangeError);
    expect(await allKeys(store)).toEqual([]);
  });
});
