// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
/**
 * The subscriptions side of API.md "Webhooks", on the app in process: create, list
 * (paged), get, update, delete, rotate, deliveries and replay; the secret only on create
 * and rotate; MAX_WEBHOOKS_PER_TENANT at its edge; every bad body a 4xx problem that
 * writes nothing; SSRF refusals; another tenant's webhook 404 on every route; and
 * subscriptions that outlive the process and the cache (the registry is the rollout store).
 */
import { rmSync } from "node:fs";
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { Webhook as StandardWebhook } from "standardwebhooks";
import { describe, expect, it, vi } from "vitest";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import type { BlobStore } from "../../src/blob/port.ts";
import { type Route, ROUTES } from "../../src/http/routes.ts";
import { loadConfig } from "../../src/runtime/config.ts";
import { wire } from "../../src/runtime/wire.ts";
import type { Resolver } from "../../src/webhooks/url-policy.ts";
import { expectProblem, type HttpResult, uniqueThreadId } from "../http/contract.ts";
import { createTestApp, useTestApps } from "../support/in-process.ts";

const TOKENS = { acme: "webhook-token-acme-71c2", globex: "webhook-token-globex-0d9e" } as const;
type Tenant = keyof typeof TOKENS;
const AUTH = { AUTH_TOKENS: Object.entries(TOKENS).map(([t, token]) => `${token}:${t}`).join(",") };
const as = (tenant: Tenant) => ({ authorization: `Bearer ${TOKENS[tenant]}` });

/** Names the tests resolve; anything else does not resolve. */
const resolve: Resolver = async (hostname) => {
  const table: Record<string, string[]> = {
    "hooks.example.com": ["93.184.215.14"],
    "other.example.com": ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "loopback.example.com": ["127.0.0.1"],
  };
  const addresses = table[hostname];
  if (!addresses) throw new Error(`ENOTFOUND ${hostname}`);
  return addresses;
};

const URL_OK = "https://hooks.example.com/in";
const VIEW_KEYS = ["createdAt", "description", "events", "id", "status", "threads", "updatedAt", "url"];
const SECRET = /^whsec_[A-Za-z0-9+/]{32}$/;

async function keysOf(store: BlobStore): Promise<string[]> {
  return store.list("", { limit: 100_000 });
}

/** The objects under the store, keys and bodies: "nothing written" is exact. */
async function snapshot(store: BlobStore): Promise<Record<string, string | null>> {
  const out: Record<string, string | null> = {};
  for (const key of await keysOf(store)) out[key] = await store.get(key);
  return out;
}

describe("webhooks API", () => {
  const app = useTestApps();

  const make = (env: Record<string, string> = {}) => app({ env: { ...AUTH, ...env }, resolve });
  type App = ReturnType<typeof make>;
  const create = async (t: App, body: unknown, tenant: Tenant = "acme") => {
    const result = await t.request("POST", "/v1/webhooks", body, as(tenant));
    expect(result.status, result.text).toBe(201);
    return result.json.webhook;
  };

  it("creates a subscription: 201 with Location, the view and a Standard Webhooks secret shown once", async () => {
    const t = make();
    const changed = vi.spyOn(t.webhooks!.deliveries, "changed");
    const threadId = uniqueThreadId("wh");
    const result = await t.request(
      "POST",
      "/v1/webhooks",
      { url: "https://Hooks.Example.com/in?x=1", threads: [threadId], events: ["thread-deleted"], description: "ops" },
      as("acme"),
    );
    expect(result.status).toBe(201);
    const webhook = result.json.webhook;
    expect(Object.keys(webhook).sort()).toEqual([...VIEW_KEYS, "secret"].sort());
    expect(webhook).toMatchObject({
      url: "https://hooks.example.com/in?x=1",
      threads: [threadId],
      events: ["thread-deleted"],
      description: "ops",
      status: "active",
    });
    expect(webhook.id).toMatch(/^wh_[0-9a-f]{32}$/);
    expect(webhook.createdAt).toBe(webhook.updatedAt);
    expect(result.headers.get("location")).toBe(`/v1/webhooks/${webhook.id}`);
    expect(result.headers.get("cache-control")).toBe("no-store");
    expect(webhook.secret).toMatch(SECRET);
    expect(changed).toHaveBeenCalledWith("acme", webhook.id);

    // Any Standard Webhooks library takes the secret as it is.
    const receiver = new StandardWebhook(webhook.secret);
    const payload = '{"type":"thread.deleted"}';
    // One instant for the signature and its header: read twice, a second could pass between.
    const signedAt = new Date();
    const signature = receiver.sign("msg_1", signedAt, payload);
    expect(signature).toMatch(/^v1,/);
    expect(
      receiver.verify(payload, {
        "webhook-id": "msg_1",
        "webhook-timestamp": String(Math.floor(signedAt.getTime() / 1000)),
        "webhook-signature": signature,
      }),
    ).toEqual({ type: "thread.deleted" });

    // Defaults: every thread, both events, no description.
    const all = await create(t, { url: URL_OK });
    expect(all).toMatchObject({ threads: null, events: ["artifact-updated", "thread-deleted"], description: "" });
    expect(all.secret).not.toBe(webhook.secret);

    // Stored in the rollout store, under the tenant, secret included; the index beside.
    expect(await keysOf(t.blobStore)).toEqual(
      expect.arrayContaining([`tenants/acme/webhooks/${webhook.id}.json`, `webhooks/acme/${webhook.id}`]),
    );
    expect((await t.webhooks!.registry.get("acme", webhook.id))?.secret).toBe(webhook.secret);
  });

  it("never shows the secret again but on rotate, which replaces it", async () => {
    const t = make();
    const created = await create(t, { url: URL_OK });
    const read = await t.request("GET", `/v1/webhooks/${created.id}`, undefined, as("acme"));
    expect(read.status).toBe(200);
    expect(Object.keys(read.json.webhook).sort()).toEqual(VIEW_KEYS);
    expect(read.text).not.toContain(created.secret);
    const { secret: _secret, ...view } = created;
    expect(read.json.webhook).toEqual(view);

    const list = await t.request("GET", "/v1/webhooks", undefined, as("acme"));
    expect(list.text).not.toContain("whsec_");
    const patched = await t.request("PATCH", `/v1/webhooks/${created.id}`, { description: "x" }, as("acme"));
    expect(patched.text).not.toContain("whsec_");

    const changed = vi.spyOn(t.webhooks!.deliveries, "changed");
    const rotated = await t.request("POST", `/v1/webhooks/${created.id}/rotate-secret`, undefined, as("acme"));
    expect(rotated.status).toBe(200);
    expect(rotated.headers.get("cache-control")).toBe("no-store");
    expect(Object.keys(rotated.json.webhook).sort()).toEqual([...VIEW_KEYS, "secret"].sort());
    expect(rotated.json.webhook.secret).toMatch(SECRET);
    expect(rotated.json.webhook.secret).not.toBe(created.secret);
    expect(rotated.json.webhook.id).toBe(created.id);
    expect((await t.webhooks!.registry.get("acme", created.id))?.secret).toBe(rotated.json.webhook.secret);
    expect(changed).toHaveBeenCalledWith("acme", created.id);
    const after = await t.request("GET", `/v1/webhooks/${created.id}`, undefined, as("acme"));
    expect(after.text).not.toContain("whsec_");
  });

  it("lists the tenant's webhooks by id, page by page with a signed cursor bound to the tenant", async () => {
    const t = make();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await create(t, { url: URL_OK, description: `n${i}` })).id);
    await create(t, { url: URL_OK }, "globex");
    ids.sort();
    const seen: string[] = [];
    let cursor: string | null = null;
    let first: string | null = null;
    for (let page = 0; page < 10; page++) {
      const query: string = cursor === null ? "?limit=2" : `?limit=2&cursor=${encodeURIComponent(cursor)}`;
      const result = await t.request("GET", `/v1/webhooks${query}`, undefined, as("acme"));
      expect(result.status).toBe(200);
      expect(result.json.webhooks.length).toBeLessThanOrEqual(2);
      for (const webhook of result.json.webhooks) expect(Object.keys(webhook).sort()).toEqual(VIEW_KEYS);
      seen.push(...result.json.webhooks.map((w: any) => w.id));
      cursor = result.json.nextCursor;
      first ??= cursor;
      if (cursor === null) break;
    }
    expect(seen).toEqual(ids);
    // Exactly a page's worth: no empty last page.
    const exact = await t.request("GET", "/v1/webhooks?limit=5", undefined, as("acme"));
    expect(exact.json.webhooks).toHaveLength(5);
    expect(exact.json.nextCursor).toBeNull();
    const all = await t.request("GET", "/v1/webhooks", undefined, as("acme"));
    expect(all.json.webhooks.map((w: any) => w.id)).toEqual(ids);

    expectProblem(
      await t.request("GET", `/v1/webhooks?cursor=${encodeURIComponent(first as string)}`, undefined, as("globex")),
      400,
      "invalid_request",
    );
    for (const query of ["?limit=0", "?limit=201", "?limit=x", "?cursor=abc", "?cursor=a.b"]) {
      expectProblem(await t.request("GET", `/v1/webhooks${query}`, undefined, as("acme")), 400, "invalid_request");
    }
  });

  it("updates url, threads (null: every thread), events, description and status; active resumes a failing one", async () => {
    const t = make();
    const created = await create(t, { url: URL_OK, threads: ["a", "b"] });
    const changed = vi.spyOn(t.webhooks!.deliveries, "changed");
    const patch = async (body: unknown) => {
      const result = await t.request("PATCH", `/v1/webhooks/${created.id}`, body, as("acme"));
      expect(result.status, result.text).toBe(200);
      return result.json.webhook;
    };
    expect(await patch({ url: "https://OTHER.example.com/x", description: "d" })).toMatchObject({
      url: "https://other.example.com/x",
      description: "d",
      threads: ["a", "b"],
    });
    expect(await patch({ threads: null, events: ["artifact-updated"] })).toMatchObject({
      threads: null,
      events: ["artifact-updated"],
    });
    expect(await patch({ threads: ["c"] })).toMatchObject({ threads: ["c"] });
    const paused = await patch({ status: "paused" });
    expect(paused.status).toBe("paused");
    expect(paused.updatedAt >= created.updatedAt).toBe(true);
    expect(paused.createdAt).toBe(created.createdAt);
    expect(changed).toHaveBeenCalledTimes(4);

    // The dispatcher gave up on it (retries exhausted): the tenant resumes it.
    const stored = await t.webhooks!.registry.get("acme", created.id);
    await t.webhooks!.registry.update({ ...stored!, status: "failing", statusReason: "retries exhausted" });
    const failing = await t.request("GET", `/v1/webhooks/${created.id}`, undefined, as("acme"));
    expect(failing.json.webhook).toMatchObject({ status: "failing", statusReason: "retries exhausted" });
    const resumed = await patch({ status: "active" });
    expect(resumed.status).toBe("active");
    expect("statusReason" in resumed).toBe(false);
    // The secret is untouched by updates.
    expect((await t.webhooks!.registry.get("acme", created.id))?.secret).toBe(created.secret);
  });

  it("deletes: 204, then 404 everywhere, its keys and cursors gone", async () => {
    const t = make();
    const kept = await create(t, { url: URL_OK });
    const created = await create(t, { url: URL_OK });
    // A cursor, as a dispatcher leaves one after a delivery.
    await t.webhooks!.registry.setCursor("acme", created.id, "t1", 4);
    expect(await t.webhooks!.registry.cursor("acme", created.id, "t1")).toBe(4);
    const changed = vi.spyOn(t.webhooks!.deliveries, "changed");
    const deleted = await t.request("DELETE", `/v1/webhooks/${created.id}`, undefined, as("acme"));
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe("");
    expect(changed).toHaveBeenCalledWith("acme", created.id);
    for (const [method, path] of [["GET", ""], ["DELETE", ""], ["POST", "/rotate-secret"], ["GET", "/deliveries"]]) {
      expectProblem(
        await t.request(method as string, `/v1/webhooks/${created.id}${path}`, undefined, as("acme")),
        404,
        "webhook_not_found",
      );
    }
    expect((await keysOf(t.blobStore)).filter((key) => key.includes(created.id))).toEqual([]);
    const list = await t.request("GET", "/v1/webhooks", undefined, as("acme"));
    expect(list.json.webhooks.map((w: any) => w.id)).toEqual([kept.id]);
  });

  it("lists deliveries (none without a dispatcher) and replays: 202, the cursor moved back", async () => {
    const t = make();
    const created = await create(t, { url: URL_OK, threads: ["t1"] });
    const deliveries = await t.request("GET", `/v1/webhooks/${created.id}/deliveries?limit=5`, undefined, as("acme"));
    expect(deliveries.status).toBe(200);
    expect(deliveries.json).toEqual({ deliveries: [] });
    const recent = vi.spyOn(t.webhooks!.deliveries, "recent");
    await t.request("GET", `/v1/webhooks/${created.id}/deliveries`, undefined, as("acme"));
    expect(recent).toHaveBeenCalledWith("acme", created.id, 20);
    for (const query of ["?limit=0", "?limit=101", "?limit=-1"]) {
      expectProblem(
        await t.request("GET", `/v1/webhooks/${created.id}/deliveries${query}`, undefined, as("acme")),
        400,
        "invalid_request",
      );
    }

    const replay = vi.spyOn(t.webhooks!.deliveries, "replay");
    const result = await t.request(
      "POST",
      `/v1/webhooks/${created.id}/replay`,
      { threadId: "t1", since: 0 },
      as("acme"),
    );
    expect(result.status).toBe(202);
    expect(result.json).toEqual({ replay: { webhookId: created.id, threadId: "t1", since: 0 } });
    expect(replay).toHaveBeenCalledWith("acme", created.id, "t1", 0);
    // A thread it does not follow: nothing to replay.
    const before = await snapshot(t.blobStore);
    const other = await t.request(
      "POST",
      `/v1/webhooks/${created.id}/replay`,
      { threadId: "t2", since: 0 },
      as("acme"),
    );
    expectProblem(other, 400, "invalid_request");
    expect(other.json.detail).toMatch(/does not follow thread t2/);
    expect(await snapshot(t.blobStore)).toEqual(before);
  });

  it("holds a tenant to MAX_WEBHOOKS_PER_TENANT at its edge: the limit is fine, one more is 422 and writes nothing", async () => {
    const t = make({ MAX_WEBHOOKS_PER_TENANT: "3" });
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await create(t, { url: URL_OK })).id);
    const before = await snapshot(t.blobStore);
    const refused = await t.request("POST", "/v1/webhooks", { url: URL_OK }, as("acme"));
    expectProblem(refused, 422, "too_many_webhooks");
    expect(refused.json.detail).toMatch(/3 webhooks/);
    expect(await snapshot(t.blobStore)).toEqual(before);
    // Another tenant has its own count; a delete makes room.
    await create(t, { url: URL_OK }, "globex");
    expect((await t.request("DELETE", `/v1/webhooks/${ids[0]}`, undefined, as("acme"))).status).toBe(204);
    await create(t, { url: URL_OK });
    expectProblem(await t.request("POST", "/v1/webhooks", { url: URL_OK }, as("acme")), 422, "too_many_webhooks");

    const none = make({ MAX_WEBHOOKS_PER_TENANT: "0" });
    expectProblem(await none.request("POST", "/v1/webhooks", { url: URL_OK }, as("acme")), 422, "too_many_webhooks");
    expect(await keysOf(none.blobStore)).toEqual([]);
  });

  it("answers every bad body 400 (415 for a non-JSON type) and writes nothing", async () => {
    const t = make();
    const created = await create(t, { url: URL_OK, threads: ["t1"] });
    const hundred = Array.from({ length: 100 }, (_, i) => `thread-${i}`);
    // The edges that are allowed.
    await create(t, { url: URL_OK, threads: hundred, description: "é".repeat(256) });
    const before = await snapshot(t.blobStore);

    const createBodies: unknown[] = [
      "{not json",
      "",
      "null",
      "[]",
      {},
      { url: 7 },
      { url: "" },
      { url: "not a url" },
      { url: URL_OK, extra: 1 },
      '{"url":"https://hooks.example.com/","__proto__":{"polluted":1}}',
      { url: URL_OK, secret: "whsec_AAAA" },
      { url: URL_OK, id: "wh_00000000000000000000000000000000" },
      { url: URL_OK, status: "paused" },
      { url: URL_OK, threads: [] },
      { url: URL_OK, threads: "t1" },
      { url: URL_OK, threads: null },
      { url: URL_OK, threads: ["-bad"] },
      { url: URL_OK, threads: ["a", "a"] },
      { url: URL_OK, threads: [...hundred, "one-more"] },
      { url: URL_OK, events: [] },
      { url: URL_OK, events: ["nope"] },
      { url: URL_OK, events: ["artifact.updated"] },
      { url: URL_OK, events: ["artifact-updated", "artifact-updated"] },
      { url: URL_OK, events: "artifact-updated" },
      { url: URL_OK, description: 5 },
      { url: URL_OK, description: "x".repeat(513) },
      { url: URL_OK, description: "é".repeat(257) },
      { url: "ftp://hooks.example.com/" },
      { url: "http://hooks.example.com/" },
      { url: "http://127.0.0.1:9/hook" },
      { url: "https://user:pw@hooks.example.com/" },
      { url: `https://hooks.example.com/${"a".repeat(2049)}` },
      { url: "https://nowhere.example.com/" },
    ];
    for (const body of createBodies) {
      const result = await t.request("POST", "/v1/webhooks", body, as("acme"));
      expectProblem(result, 400, "invalid_request");
    }
    const patchBodies: unknown[] = [
      {},
      "{",
      { status: "failing" },
      { status: "ACTIVE" },
      { threads: [] },
      { events: null },
      { events: [] },
      { url: null },
      { description: null },
      { secret: "whsec_AAAA" },
      { id: created.id },
      { createdAt: "2020-01-01T00:00:00.000Z" },
      { url: "https://10.0.0.1/" },
      { description: "ok", extra: true },
    ];
    for (const body of patchBodies) {
      expectProblem(await t.request("PATCH", `/v1/webhooks/${created.id}`, body, as("acme")), 400, "invalid_request");
    }
    const replayBodies: unknown[] = [
      {},
      { threadId: "t1" },
      { since: 0 },
      { threadId: "t1", since: -1 },
      { threadId: "t1", since: 1.5 },
      { threadId: "t1", since: "3" },
      { threadId: "t1", since: 2 ** 53 },
      { threadId: "-x", since: 0 },
      { threadId: "t1", since: 0, extra: 1 },
    ];
    for (const body of replayBodies) {
      expectProblem(
        await t.request("POST", `/v1/webhooks/${created.id}/replay`, body, as("acme")),
        400,
        "invalid_request",
      );
    }
    expectProblem(
      await t.request("POST", "/v1/webhooks", JSON.stringify({ url: URL_OK }), {
        ...as("acme"),
        "content-type": "text/plain",
      }),
      415,
      "unsupported_media_type",
    );
    expectProblem(
      await t.request(
        "POST",
        "/v1/webhooks",
        JSON.stringify({ url: URL_OK, description: "x".repeat(40_000) }),
        as("acme"),
      ),
      413,
      "payload_too_large",
    );
    expect(await snapshot(t.blobStore)).toEqual(before);
  });

  it("refuses URLs into private networks (SSRF), on create and on update, writing nothing", async () => {
    const t = make();
    const created = await create(t, { url: URL_OK });
    const before = await snapshot(t.blobStore);
    for (
      const [url, why] of [
        ["https://10.0.0.1/hook", /private address/],
        ["https://169.254.169.254/latest/meta-data/", /metadata address/],
        ["https://[fd00::1]/hook", /unique-local address/],
        // A name resolving to 127.0.0.1, without WEBHOOK_ALLOW_HTTP_LOOPBACK.
        ["https://loopback.example.com/hook", /resolves to a loopback address/],
        ["https://[::ffff:127.0.0.1]/hook", /loopback address/],
        ["https://metadata.google.internal/", /metadata service/],
        ["http://localhost:8080/hook", /https/],
      ] as const
    ) {
      for (
        const result of [
          await t.request("POST", "/v1/webhooks", { url }, as("acme")),
          await t.request("PATCH", `/v1/webhooks/${created.id}`, { url }, as("acme")),
        ]
      ) {
        expectProblem(result, 400, "invalid_request");
        expect(result.json.detail, url).toMatch(/^body url: /);
        expect(result.json.detail, url).toMatch(why);
        expect(result.text).not.toContain("127.0.0.1");
      }
    }
    expect(await snapshot(t.blobStore)).toEqual(before);
  });

  it("with WEBHOOK_ALLOW_HTTP_LOOPBACK=1 takes http:// to loopback hosts only", async () => {
    const t = make({ WEBHOOK_ALLOW_HTTP_LOOPBACK: "1" });
    for (const url of ["http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/hook"]) {
      expect((await create(t, { url })).url).toBe(url);
    }
    expect((await create(t, { url: "https://loopback.example.com/x" })).url).toBe("https://loopback.example.com/x");
    for (const url of ["http://hooks.example.com/hook", "http://93.184.215.14/hook", "https://10.0.0.1/"]) {
      expectProblem(await t.request("POST", "/v1/webhooks", { url }, as("acme")), 400, "invalid_request");
    }
  });

  it("answers another tenant's webhook 404 on every route, exactly as an absent one, and writes nothing", async () => {
    const t = make();
    const owned = await create(t, { url: URL_OK, threads: ["t1"], description: "acme's" });
    const before = await snapshot(t.blobStore);
    const absent = `wh_${"0".repeat(32)}`;
    const calls: Array<[string, string, unknown]> = [
      ["GET", "", undefined],
      ["HEAD", "", undefined],
      ["PATCH", "", { description: "globex was here" }],
      ["PATCH", "", { status: "paused" }],
      ["DELETE", "", undefined],
      ["POST", "/rotate-secret", undefined],
      ["GET", "/deliveries", undefined],
      ["POST", "/replay", { threadId: "t1", since: 0 }],
    ];
    for (const [method, suffix, body] of calls) {
      const foreign = await t.request(method, `/v1/webhooks/${owned.id}${suffix}`, body, as("globex"));
      const missing = await t.request(method, `/v1/webhooks/${absent}${suffix}`, body, as("globex"));
      const malformed = await t.request(method, `/v1/webhooks/not-an-id${suffix}`, body, as("acme"));
      for (const result of [foreign, missing, malformed]) {
        expect(result.status, `${method} ${suffix}`).toBe(404);
        if (method !== "HEAD") expectProblem(result, 404, "webhook_not_found");
      }
      if (method !== "HEAD") {
        expect(blankRequestId(foreign.text)).toBe(blankRequestId(missing.text.replaceAll(absent, owned.id)));
      }
      expect(foreign.text).not.toContain("acme");
    }
    const list = await t.request("GET", "/v1/webhooks", undefined, as("globex"));
    expect(list.json).toEqual({ webhooks: [], nextCursor: null });
    expect(await snapshot(t.blobStore)).toEqual(before);
    const read = await t.request("GET", `/v1/webhooks/${owned.id}`, undefined, as("acme"));
    const { secret: _secret, ...view } = owned;
    expect(read.json.webhook).toEqual(view);
  });

  it("asks for a token on every route (401) and serves HEAD and 405 like the other routes", async () => {
    const t = make();
    const owned = await create(t, { url: URL_OK });
    const before = await snapshot(t.blobStore);
    for (
      const [method, path, body] of [
        ["POST", "/v1/webhooks", { url: URL_OK }],
        ["GET", "/v1/webhooks", undefined],
        ["GET", `/v1/webhooks/${owned.id}`, undefined],
        ["PATCH", `/v1/webhooks/${owned.id}`, { description: "x" }],
        ["DELETE", `/v1/webhooks/${owned.id}`, undefined],
        ["POST", `/v1/webhooks/${owned.id}/rotate-secret`, undefined],
        ["GET", `/v1/webhooks/${owned.id}/deliveries`, undefined],
        ["POST", `/v1/webhooks/${owned.id}/replay`, { threadId: "t1", since: 0 }],
      ] as const
    ) {
      const result = await t.request(method, path, body);
      expectProblem(result, 401, "unauthorized");
      expect(result.headers.get("www-authenticate")).toBe("Bearer");
      const bad = await t.request(method, path, body, { authorization: "Bearer nope" });
      expectProblem(bad, 401, "unauthorized");
    }
    expect(await snapshot(t.blobStore)).toEqual(before);

    const head = await t.request("HEAD", "/v1/webhooks", undefined, as("acme"));
    expect(head.status).toBe(200);
    expect(head.text).toBe("");
    const put = await t.request("PUT", `/v1/webhooks/${owned.id}`, { url: URL_OK }, as("acme"));
    expectProblem(put, 405, "invalid_request");
    expect(put.headers.get("allow")).toBe("GET, HEAD, PATCH, DELETE");
    expect((await t.request("GET", `/v1/webhooks/${owned.id}/rotate-secret`, undefined, as("acme"))).status).toBe(405);
  });

  it("counts webhook writes and reads against the tenant's rate limits", async () => {
    const t = make({ RATE_LIMIT_WRITES: "1/h:2", RATE_LIMIT_READS: "1/h:1" });
    await create(t, { url: URL_OK });
    await create(t, { url: URL_OK });
    const refused = await t.request("POST", "/v1/webhooks", { url: URL_OK }, as("acme"));
    expectProblem(refused, 429, "rate_limited");
    expect((await t.request("GET", "/v1/webhooks", undefined, as("acme"))).status).toBe(200);
    expectProblem(await t.request("GET", "/v1/webhooks", undefined, as("acme")), 429, "rate_limited");
    expect((await t.webhooks!.registry.list("acme", { limit: 10 })).length).toBe(2);
  });

  it("works without authentication as tenant local (loopback), keys under tenants/local", async () => {
    const t = app({ resolve });
    const result = await t.request("POST", "/v1/webhooks", { url: URL_OK });
    expect(result.status).toBe(201);
    expect(await keysOf(t.blobStore)).toEqual(
      [`tenants/local/webhooks/${result.json.webhook.id}.json`, `webhooks/local/${result.json.webhook.id}`].sort(),
    );
  });

  it("survives a new app over the same data folder with the cache lost: the registry is the rollout store", async () => {
    const dir = mkdtempSync(join(tmpdir(), "webhooks-durable-"));
    try {
      const first = createTestApp({ env: AUTH, dir, resolve });
      const created = (await first.request("POST", "/v1/webhooks", { url: URL_OK, threads: ["t1"] }, as("acme")))
        .json.webhook;
      await first.webhooks!.registry.setCursor("acme", created.id, "t1", 3);
      await first.close();
      // The libSQL cache is gone (file and journal): the subscription never lived there.
      for (const name of readdirSync(dir)) {
        if (name.startsWith("artifacts.db")) rmSync(join(dir, name), { force: true });
      }

      const second = createTestApp({ env: AUTH, dir, resolve });
      try {
        const read = await second.request("GET", `/v1/webhooks/${created.id}`, undefined, as("acme"));
        expect(read.status).toBe(200);
        const { secret, ...view } = created;
        expect(read.json.webhook).toEqual(view);
        const list = await second.request("GET", "/v1/webhooks", undefined, as("acme"));
        expect(list.json.webhooks.map((w: any) => w.id)).toEqual([created.id]);
        const stored = await second.webhooks!.registry.get("acme", created.id);
        expect(stored?.secret).toBe(secret);
        expect(await second.webhooks!.registry.cursor("acme", created.id, "t1")).toBe(3);
        expect((await second.webhooks!.registry.all()).map((w) => w.id)).toEqual([created.id]);
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("documents every webhook route in the OpenAPI document, with its schemas and 404", async () => {
    const t = make();
    const doc = (await t.request("GET", "/v1/openapi.json")).json;
    const webhookRoutes = Object.values(ROUTES as Record<string, Route>).filter((r) => r.feature === "webhooks");
    expect(webhookRoutes.length).toBe(5);
    for (const route of webhookRoutes) {
      const operations = doc.paths[route.path.replace(/:(\w+)/g, "{$1}")];
      expect(operations, route.path).toBeDefined();
      const documented = Object.keys(operations).map((m) => m.toUpperCase());
      for (const method of route.methods.filter((m) => m !== "HEAD")) expect(documented, route.path).toContain(method);
      for (const [method, operation] of Object.entries<any>(operations)) {
        expect(Object.keys(operation.responses), `${method} ${route.path}`).toEqual(
          expect.arrayContaining(["400", "401", "429", "503"]),
        );
        if (route.path !== "/v1/webhooks") expect(operation.responses["404"], `${method} ${route.path}`).toBeDefined();
      }
    }
    expect(doc.paths["/v1/webhooks"].post.responses["422"].description).toMatch(/too_many_webhooks/);
    expect(doc.paths["/v1/webhooks"].post.responses["201"].content["application/json"].schema.$ref).toBe(
      "#/components/schemas/WebhookSecretResponse",
    );
    const schemas = doc.components.schemas;
    expect(schemas.Webhook.properties.secret).toBeUndefined();
    expect(schemas.WebhookWithSecret.required).toContain("secret");
    expect(schemas.CreateWebhookBody).toMatchObject({ required: ["url"], additionalProperties: false });
    expect(schemas.UpdateWebhookBody).toMatchObject({ minProperties: 1, additionalProperties: false });
    expect(schemas.ReplayBody.required).toEqual(["threadId", "since"]);
  });

  it("without webhooks wired (Workers for now) the routes are the generic 404", async () => {
    const config = loadConfig({ LIBSQL_URL: ":memory:" });
    const wired = wire({
      config,
      blobStore: new MemoryBlobStore(),
      connectLibsql: () => createClient({ url: "file::memory:" }),
      admission: null,
    });
    try {
      for (
        const [method, path] of [
          ["POST", "/v1/webhooks"],
          ["GET", "/v1/webhooks"],
          ["PUT", "/v1/webhooks"],
          ["GET", `/v1/webhooks/wh_${"0".repeat(32)}`],
          ["POST", `/v1/webhooks/wh_${"0".repeat(32)}/replay`],
        ]
      ) {
        const response = await wired.app.request(path as string, {
          method,
          headers: { "content-type": "application/json" },
          ...(method === "GET" ? {} : { body: "{}" }),
        });
        const result: HttpResult = {
          status: response.status,
          headers: response.headers,
          text: await response.clone().text(),
          json: await response.json(),
        };
        expectProblem(result, 404, "invalid_request");
        expect(result.json.detail).toMatch(/^no route/);
      }
      expect(wired.webhooks).toBeUndefined();
    } finally {
      wired.cache.close();
    }
  });
});

function blankRequestId(text: string): string {
  return text.replace(/"requestId":"[^"]*"/, '"requestId":"-"');
}
