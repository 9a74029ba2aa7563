import type { Hono } from "hono";
import type { FeedSource } from "../../live/feed.ts";
import { resumePoint, streamManyThreadEvents, type StreamOptions, streamThreadEvents } from "../sse.ts";
import { ProblemError } from "../../model/errors.ts";
import type { Metrics } from "../../model/metrics.ts";
import type { ArtifactService } from "../../service/artifact-service.ts";
import type { AppEnv } from "../app.ts";
import { type ResumeTokenCodec, tagOf } from "../resume-token.ts";
import { ROUTES } from "../routes.ts";
import { parseThreadSet } from "../thread-set.ts";
import { threadIdOf } from "../validate.ts";

/** The `artifact-updated` stream of one thread, and of up to 100 on one connection. */
export function eventRoutes(
  app: Hono<AppEnv>,
  deps: {
    service: ArtifactService;
    feeds: FeedSource;
    options: StreamOptions;
    tokens: ResumeTokenCodec;
    metrics: Metrics;
    /** The most threads one many-threads stream may follow (MAX_STREAM_THREADS). */
    maxStreamThreads: number;
  },
): void {
  app.get(ROUTES.events.path, (c) => {
    const threadId = threadIdOf(c);
    const resumeAfter = resumePoint(c.req.header("last-event-id"), c.req.query("since"));
    if (resumeAfter === null) {
      throw new ProblemError("invalid_request", "Last-Event-ID and since must be a non-negative integer seq");
    }
    return streamThreadEvents(c, { tenant: c.get("tenant"), threadId, resumeAfter }, {
      feeds: deps.feeds,
      reader: deps.feeds.reader ?? deps.service,
      options: deps.options,
      metrics: deps.metrics,
      onClosed: c.get("streamClosed"),
    });
  });

  app.get(ROUTES.manyEvents.path, async (c) => {
    const tenant = c.get("tenant");
    const threads = parseThreadSet(c.req.query("threads"), deps.maxStreamThreads);
    const tags = new Map(threads.map((t) => [t.threadId, tagOf(t.threadId)]));
    // A resume token (an event's id) wins over the list's `:seq` for every thread it names.
    const lastEventId = c.req.header("last-event-id")?.trim();
    if (lastEventId) {
      const resumed = await deps.tokens.decode(tenant, lastEventId);
      for (const thread of threads) thread.after = resumed.get(tags.get(thread.threadId) as string) ?? thread.after;
    }
    return streamManyThreadEvents(c, { tenant, threads }, {
      feeds: deps.feeds,
      reader: deps.feeds.reader ?? deps.service,
      options: deps.options,
      metrics: deps.metrics,
      onClosed: c.get("streamClosed"),
      eventId: (positions) =>
        deps.tokens.encode(tenant, [...positions].map(([threadId, seq]) => [tags.get(threadId) as string, seq])),
    });
  });
}
