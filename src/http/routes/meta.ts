import type { Hono } from "hono";
import type { FeedSource } from "../../live/feed.ts";
import type { ArtifactService } from "../../service/artifact-service.ts";
import type { AppEnv } from "../app.ts";
import { openApiDocument } from "../openapi.ts";
import { LIVE_PAGE } from "../page.ts";
import { ROUTES } from "../routes.ts";

/** How long /readyz waits for each store before counting it down (API.md: 2 s). */
export const READY_TIMEOUT_MS = 2000;

/** The live page, the OpenAPI document and the probes: no tenant's data. */
export function metaRoutes(
  app: Hono<AppEnv>,
  deps: { service: ArtifactService; feeds: Pick<FeedSource, "draining">; readyTimeoutMs?: number },
): void {
  app.get(ROUTES.page.path, (c) => c.html(LIVE_PAGE));
  app.get(ROUTES.openapi.path, (c) => c.json(openApiDocument()));
  app.get(ROUTES.health.path, async (c) => {
    const health = await deps.service.health();
    return c.json({ ok: health.rollout === "up", ...health }, health.rollout === "up" ? 200 : 503);
  });
  // Liveness: the process serves; nothing else is asked (a store outage must not get it restarted).
  app.get(ROUTES.livez.path, (c) => c.json({ live: true }));
  // Readiness: send traffic here. Not while a shutdown drains (the feeds drain when it starts),
  // not while the rollout store (the truth) does not answer within the timeout; the cache may be down.
  app.get(ROUTES.readyz.path, async (c) => {
    if (deps.feeds.draining) return c.json({ ready: false, draining: true }, 503);
    const health = await deps.service.health({ timeoutMs: deps.readyTimeoutMs ?? READY_TIMEOUT_MS });
    // A shutdown that started while the stores were asked wins.
    const ready = health.rollout === "up" && !deps.feeds.draining;
    return c.json({ ready, draining: deps.feeds.draining, ...health }, ready ? 200 : 503);
  });
}
