import type { Hono } from "hono";
import type { FeedSource } from "../../live/feed.ts";
import { resumePoint, type StreamOptions, streamThreadEvents } from "../../live/sse.ts";
import { ProblemError } from "../../model/errors.ts";
import type { ArtifactService } from "../../service/artifact-service.ts";
import type { AppEnv } from "../app.ts";
import { ROUTES } from "../routes.ts";
import { threadIdOf } from "../validate.ts";

/** The `artifact-updated` stream of one thread. */
export function eventRoutes(
  app: Hono<AppEnv>,
  deps: { service: ArtifactService; hub: FeedSource; options: StreamOptions },
): void {
  app.get(ROUTES.events.path, (c) => {
    const threadId = threadIdOf(c);
    const resumeAfter = resumePoint(c.req.header("last-event-id"), c.req.query("since"));
    if (resumeAfter === null) {
      throw new ProblemError("invalid_request", "Last-Event-ID and since must be a non-negative integer seq");
    }
    return streamThreadEvents(c, { tenant: c.get("tenant"), threadId, resumeAfter }, {
      hub: deps.hub,
      reader: deps.service,
      options: deps.options,
    });
  });
}
