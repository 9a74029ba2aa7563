import type { Context, Hono } from "hono";
import { ProblemError } from "../../model/errors.ts";
import {
  CreateWebhookBodySchema,
  DeliveriesQuerySchema,
  ListWebhooksQuerySchema,
  ReplayBodySchema,
  UpdateWebhookBodySchema,
} from "../../model/schemas.ts";
import { type Webhook, WEBHOOK_EVENTS, webhookView } from "../../model/webhook.ts";
import { isWebhookId, newWebhookId, newWebhookSecret } from "../../model/webhook-ids.ts";
import type { KeptAnswer, KeyedAnswers } from "../../webhooks/keyed-answers.ts";
import type { WebhookDeliveries, WebhookRegistry } from "../../webhooks/port.ts";
import { checkWebhookUrl, type Resolver, type UrlPolicy } from "../../webhooks/url-policy.ts";
import type { AppEnv } from "../app.ts";
import { readJsonBody } from "../body.ts";
import type { CursorCodec } from "../cursor.ts";
import { idempotencyOf } from "../idempotency.ts";
import { invalid } from "../problem.ts";
import { ROUTES } from "../routes.ts";
import { parseOr400 } from "../validate.ts";

/** What the webhook routes are served from; `createApp` registers them only when given these. */
export interface WebhookOptions {
  registry: WebhookRegistry;
  deliveries: WebhookDeliveries;
  /** Where keyed writes keep their answers (`Idempotency-Key`). */
  answers: KeyedAnswers;
  /** Resolves a URL's host for the SSRF check; null where the runtime has no DNS API (literal addresses only). */
  resolve: Resolver | null;
  /** `WEBHOOK_ALLOW_HTTP_LOOPBACK=1`. */
  allowHttpLoopback: boolean;
  /** `MAX_WEBHOOKS_PER_TENANT`. */
  maxPerTenant: number;
  /** The clock of `createdAt` / `updatedAt` (tests). */
  now?: () => Date;
}

/** The largest body: a 2048-char URL, 100 threadIds of 128 chars, a 512-byte description, with room. */
const WEBHOOK_BODY_BYTES = 32 * 1024;

/**
 * API.md "Webhooks", the subscriptions side: create, list, get, update, delete, rotate the
 * secret, recent deliveries and replay, all scoped to the caller's tenant (another tenant's
 * webhook, and a malformed id, are `404 webhook_not_found`). Every change tells the
 * deliveries (`changed`) so a dispatcher looks again. The secret is in the answer of
 * create and rotate only, which are never cached (`no-store`).
 */
export function webhookRoutes(app: Hono<AppEnv>, deps: WebhookOptions & { cursors: CursorCodec }): void {
  const { registry, deliveries, cursors, maxPerTenant } = deps;
  const policy: UrlPolicy = { allowHttpLoopback: deps.allowHttpLoopback, resolve: deps.resolve };
  const now = () => (deps.now?.() ?? new Date()).toISOString();

  /** The URL as it will be called (normalized by the WHATWG parser), or a 400 saying why not. */
  const checkedUrl = async (input: string): Promise<string> => {
    const check = await checkWebhookUrl(input, policy);
    if (!check.ok) throw invalid(`body url: ${check.detail}`);
    return check.url.href;
  };

  /** The caller's webhook named by the path, or 404. */
  const owned = async (c: Context<AppEnv>): Promise<Webhook> => {
    const id = c.req.param("webhookId") ?? "";
    const webhook = isWebhookId(id) ? await registry.get(c.get("tenant"), id) : null;
    if (!webhook) {
      throw new ProblemError(
        "webhook_not_found",
        isWebhookId(id) ? `no webhook ${id}` : "no such webhook (ids are wh_ and 32 hex digits)",
      );
    }
    return webhook;
  };

  const withSecret = (webhook: Webhook) => ({ webhook: { ...webhookView(webhook), secret: webhook.secret } });

  /**
   * A write, once per `Idempotency-Key` when the request has one (see KeyedAnswers): its
   * answer is kept, and a repeat gets it back. `token`: the first claim's (a create's id).
   */
  const keyed = async (
    c: Context<AppEnv>,
    body: unknown,
    write: (token: string) => Promise<KeptAnswer>,
  ): Promise<Response> => {
    const mark = await idempotencyOf(c, body);
    const answer = mark
      ? await deps.answers.once(c.get("tenant"), mark, () => newWebhookId(), write)
      : await write(newWebhookId());
    for (const [name, value] of Object.entries(answer.headers)) c.header(name, value);
    // deno-lint-ignore no-explicit-any -- the kept status is one a route answered
    return answer.body === null ? c.body(null, answer.status as any) : c.json(answer.body, answer.status as any);
  };

  app.post(ROUTES.webhooks.path, async (c) => {
    const tenant = c.get("tenant");
    const body = parseOr400(CreateWebhookBodySchema, await readJsonBody(c.req.raw, WEBHOOK_BODY_BYTES), "body");
    const url = await checkedUrl(body.url);
    return keyed(c, body, async (id) => {
      const created = (webhook: Webhook): KeptAnswer => ({
        status: 201,
        body: withSecret(webhook),
        headers: { location: `/v1/webhooks/${webhook.id}`, "cache-control": "no-store" },
      });
      // A keyed create run again (its first run's process died before keeping the answer) finds its webhook made.
      const made = await registry.get(tenant, id);
      if (made) return created(made);
      const at = now();
      const webhook: Webhook = {
        id,
        tenant,
        url,
        threads: body.threads ?? null,
        events: body.events ?? [...WEBHOOK_EVENTS],
        description: body.description ?? "",
        status: "active",
        createdAt: at,
        updatedAt: at,
        secret: newWebhookSecret(),
      };
      if (!(await registry.create(webhook, maxPerTenant))) {
        throw new ProblemError(
          "too_many_webhooks",
          `this tenant has ${maxPerTenant} webhooks, the most it may hold (MAX_WEBHOOKS_PER_TENANT); delete one first`,
        );
      }
      deliveries.changed(tenant, webhook.id);
      return created(webhook);
    });
  });

  app.get(ROUTES.webhooks.path, async (c) => {
    const tenant = c.get("tenant");
    const query = parseOr400(ListWebhooksQuerySchema, c.req.query(), "query");
    const after = query.cursor === undefined ? undefined : await cursors.decodeWebhooks(tenant, query.cursor);
    // One more than the page: whether there is a next one.
    const found = await registry.list(tenant, { ...(after === undefined ? {} : { after }), limit: query.limit + 1 });
    const page = found.slice(0, query.limit);
    const last = page[page.length - 1];
    return c.json({
      webhooks: page.map(webhookView),
      nextCursor: found.length > query.limit && last ? await cursors.encodeWebhooks(tenant, last.id) : null,
    });
  });

  app.get(ROUTES.webhook.path, async (c) => c.json({ webhook: webhookView(await owned(c)) }));

  app.patch(ROUTES.webhook.path, async (c) => {
    const body = parseOr400(UpdateWebhookBodySchema, await readJsonBody(c.req.raw, WEBHOOK_BODY_BYTES), "body");
    return keyed(c, body, async () => {
      const webhook = await owned(c);
      const next: Webhook = { ...webhook, updatedAt: now() };
      if (body.url !== undefined) next.url = await checkedUrl(body.url);
      if (body.threads !== undefined) next.threads = body.threads;
      if (body.events !== undefined) next.events = body.events;
      if (body.description !== undefined) next.description = body.description;
      if (body.status !== undefined) {
        // "active" resumes a paused or failing webhook where its delivery stopped; the reason goes with the state.
        next.status = body.status;
        delete next.statusReason;
      }
      await registry.update(next);
      deliveries.changed(next.tenant, next.id);
      return { status: 200, body: { webhook: webhookView(next) }, headers: {} };
    });
  });

  app.delete(ROUTES.webhook.path, (c) =>
    keyed(c, undefined, async () => {
      const webhook = await owned(c);
      await registry.delete(webhook.tenant, webhook.id);
      deliveries.changed(webhook.tenant, webhook.id);
      return { status: 204, body: null, headers: {} };
    }));

  app.post(ROUTES.webhookRotateSecret.path, (c) =>
    keyed(c, undefined, async () => {
      const webhook = await owned(c);
      const next: Webhook = { ...webhook, secret: newWebhookSecret(), updatedAt: now() };
      await registry.update(next);
      deliveries.changed(next.tenant, next.id);
      return { status: 200, body: withSecret(next), headers: { "cache-control": "no-store" } };
    }));

  app.get(ROUTES.webhookDeliveries.path, async (c) => {
    const query = parseOr400(DeliveriesQuerySchema, c.req.query(), "query");
    const webhook = await owned(c);
    return c.json({ deliveries: await deliveries.recent(webhook.tenant, webhook.id, query.limit) });
  });

  app.post(ROUTES.webhookReplay.path, async (c) => {
    const body = parseOr400(ReplayBodySchema, await readJsonBody(c.req.raw, WEBHOOK_BODY_BYTES), "body");
    return keyed(c, body, async () => {
      const webhook = await owned(c);
      if (webhook.threads !== null && !webhook.threads.includes(body.threadId)) {
        throw invalid(`body threadId: webhook ${webhook.id} does not follow thread ${body.threadId}`);
      }
      await deliveries.replay(webhook.tenant, webhook.id, body.threadId, body.since);
      return {
        status: 202,
        body: { replay: { webhookId: webhook.id, threadId: body.threadId, since: body.since } },
        headers: {},
      };
    });
  });
}
