import type { Hono } from "hono";
import { threadViewJson, toThreadView } from "../../model/artifact.ts";
import { ForkBodySchema, ListThreadsQuerySchema, ReadThreadQuerySchema } from "../../model/schemas.ts";
import { readJsonBody } from "../body.ts";
import type { ArtifactService } from "../../service/artifact-service.ts";
import type { AppEnv } from "../app.ts";
import type { CursorCodec } from "../cursor.ts";
import { idempotencyOf } from "../idempotency.ts";
import { matchesIfNoneMatch, parseIfMatch } from "../preconditions.ts";
import { ROUTES } from "../routes.ts";
import { parseOr400, threadIdOf } from "../validate.ts";

/** A fork's body is an id and a seq: a few hundred bytes at most. */
const FORK_BODY_BYTES = 1024;

/** read-thread (now or as of a seq), the thread list, and forks. */
export function threadRoutes(app: Hono<AppEnv>, deps: { service: ArtifactService; cursors: CursorCodec }): void {
  const { service, cursors } = deps;

  app.get(ROUTES.thread.path, async (c) => {
    const threadId = threadIdOf(c);
    const query = parseOr400(ReadThreadQuerySchema, c.req.query(), "query");
    if (query.atSeq !== undefined) {
      // The past never changes: cacheable for good, and read from the rollout alone.
      const thread = await service.readThreadAt(c.get("tenant"), threadId, query.atSeq);
      const etag = `"${thread.seq}"`;
      c.header("etag", etag);
      c.header("x-artifacts-source", "rollout");
      c.header("cache-control", "private, max-age=31536000, immutable");
      if (matchesIfNoneMatch(c.req.header("if-none-match"), etag)) return c.body(null, 304);
      return c.body(threadViewJson(thread), 200, { "content-type": "application/json" });
    }
    const { thread, source } = await service.readThread(c.get("tenant"), threadId, {
      consistency: query.consistency,
      ...(query.minSeq === undefined ? {} : { minSeq: query.minSeq }),
    });
    const etag = `"${thread.seq}"`;
    c.header("etag", etag);
    c.header("x-artifacts-source", source);
    c.header("cache-control", "no-cache");
    if (matchesIfNoneMatch(c.req.header("if-none-match"), etag)) return c.body(null, 304);
    // The stored artifact texts are served as they are (see ThreadJson).
    return c.body(threadViewJson(thread), 200, { "content-type": "application/json" });
  });

  app.post(ROUTES.fork.path, async (c) => {
    const sourceId = threadIdOf(c);
    const body = parseOr400(ForkBodySchema, await readJsonBody(c.req.raw, FORK_BODY_BYTES), "body");
    const idempotency = await idempotencyOf(c, body);
    const thread = await service.fork(c.get("tenant"), sourceId, body.threadId, body.atSeq, idempotency);
    c.header("location", `/v1/threads/${body.threadId}`);
    c.header("etag", `"${thread.seq}"`);
    return c.body(threadViewJson(thread), 201, { "content-type": "application/json" });
  });

  app.delete(ROUTES.thread.path, async (c) => {
    const threadId = threadIdOf(c);
    const precondition = parseIfMatch(c.req.header("if-match"));
    const idempotency = await idempotencyOf(c);
    return c.json({ deleted: await service.deleteThread(c.get("tenant"), threadId, precondition, idempotency) });
  });

  app.get(ROUTES.threads.path, async (c) => {
    const tenant = c.get("tenant");
    const query = parseOr400(ListThreadsQuerySchema, c.req.query(), "query");
    const after = query.cursor === undefined ? null : await cursors.decode(tenant, query.cursor);
    const page = await service.listThreads(tenant, { after, limit: query.limit });
    return c.json({
      threads: page.threads.map(toThreadView),
      nextCursor: page.next ? await cursors.encode(tenant, page.next) : null,
    });
  });
}
