import type { Hono } from "hono";
import type { ArtifactService } from "../../service/artifact-service.ts";
import type { AppEnv } from "../app.ts";
import { openApiDocument } from "../openapi.ts";
import { LIVE_PAGE } from "../page.ts";
import { ROUTES } from "../routes.ts";

/** The live page, the OpenAPI document and the health check: no tenant's data. */
export function metaRoutes(app: Hono<AppEnv>, deps: { service: ArtifactService }): void {
  app.get(ROUTES.page.path, (c) => c.html(LIVE_PAGE));
  app.get(ROUTES.openapi.path, (c) => c.json(openApiDocument()));
  app.get(ROUTES.health.path, async (c) => {
    const health = await deps.service.health();
    return c.json({ ok: health.rollout === "up", ...health }, health.rollout === "up" ? 200 : 503);
  });
}
