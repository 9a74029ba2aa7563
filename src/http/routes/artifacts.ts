import type { Hono } from "hono";
import type { WriteCommand } from "../../model/decide.ts";
import {
  CreateArtifactBodySchema,
  MergePatchBodySchema,
  UpdateArtifactBodySchema,
  VersionsQuerySchema,
} from "../../model/schemas.ts";
import type { ArtifactService, ArtifactWriteResult, ServiceLimits } from "../../service/artifact-service.ts";
import type { AppEnv } from "../app.ts";
import type { CursorCodec } from "../cursor.ts";
import { BODY_OVERHEAD_BYTES, checkPayload, mediaTypeOf, MERGE_PATCH_MEDIA_TYPE, readJsonBody } from "../body.ts";
import { idempotencyOf } from "../idempotency.ts";
import { parseIfMatch } from "../preconditions.ts";
import { ROUTES } from "../routes.ts";
import { artifactIdOf, parseOr400, threadIdOf } from "../validate.ts";

/** create-artifact, get, update, remove, and an artifact's versions. */
export function artifactRoutes(
  app: Hono<AppEnv>,
  deps: { service: ArtifactService; limits: ServiceLimits; cursors: CursorCodec },
): void {
  const { service, limits, cursors } = deps;
  const maxBodyBytes = limits.maxPayloadBytes + BODY_OVERHEAD_BYTES;

  app.post(ROUTES.createArtifact.path, async (c) => {
    const threadId = threadIdOf(c);
    const body = parseOr400(CreateArtifactBodySchema, await readJsonBody(c.req.raw, maxBodyBytes), "body");
    const payload = checkPayload(body.payload, limits.maxPayloadBytes);
    const idempotency = await idempotencyOf(c, body);
    const result = await service.writeArtifact(c.get("tenant"), threadId, {
      kind: "create",
      artifactType: body.artifactType,
      identityKey: body.identityKey ?? null,
      payload,
      ...(idempotency ? { idempotency } : {}),
    });
    if (result.created) c.header("location", `/v1/threads/${threadId}/artifacts/${result.artifact.id}`);
    return c.json(writeBody(result), result.created ? 201 : 200);
  });

  app.get(ROUTES.versions.path, async (c) => {
    const tenant = c.get("tenant");
    const threadId = threadIdOf(c);
    const artifactId = artifactIdOf(c);
    const query = parseOr400(VersionsQuerySchema, c.req.query(), "query");
    const scope = `${threadId}/${artifactId}`;
    const afterSeq = query.cursor === undefined ? 0 : await cursors.decodeVersions(tenant, scope, query.cursor);
    const page = await service.artifactVersions(tenant, threadId, artifactId, { afterSeq, limit: query.limit });
    c.header("cache-control", "no-cache");
    return c.json({
      versions: page.versions,
      nextCursor: page.next === null ? null : await cursors.encodeVersions(tenant, scope, page.next),
    });
  });

  app.get(ROUTES.artifact.path, async (c) => {
    const { artifact, source } = await service.getArtifact(c.get("tenant"), threadIdOf(c), artifactIdOf(c));
    c.header("etag", `"${artifact.version}"`);
    c.header("x-artifacts-source", source);
    return c.json({ artifact });
  });

  app.patch(ROUTES.artifact.path, async (c) => {
    const threadId = threadIdOf(c);
    const artifactId = artifactIdOf(c);
    const precondition = parseIfMatch(c.req.header("if-match"));
    const merge = mediaTypeOf(c.req.header("content-type")) === MERGE_PATCH_MEDIA_TYPE;
    const json = await readJsonBody(c.req.raw, maxBodyBytes);
    // A merge patch is decided on the payload the artifact has inside its write group
    // (its result is bounded there); a plain body replaces the payload.
    const command: WriteCommand = merge
      ? {
        kind: "merge",
        artifactId,
        patch: checkPayload(parseOr400(MergePatchBodySchema, json, "merge patch").payload, limits.maxPayloadBytes),
        precondition,
      }
      : {
        kind: "update",
        artifactId,
        payload: checkPayload(parseOr400(UpdateArtifactBodySchema, json, "body").payload, limits.maxPayloadBytes),
        precondition,
      };
    const idempotency = await idempotencyOf(c, json);
    if (idempotency) command.idempotency = idempotency;
    return c.json(writeBody(await service.writeArtifact(c.get("tenant"), threadId, command)));
  });

  app.delete(ROUTES.artifact.path, async (c) => {
    const threadId = threadIdOf(c);
    const artifactId = artifactIdOf(c);
    const precondition = parseIfMatch(c.req.header("if-match"));
    const idempotency = await idempotencyOf(c);
    const result = await service.writeArtifact(c.get("tenant"), threadId, {
      kind: "remove",
      artifactId,
      precondition,
      ...(idempotency ? { idempotency } : {}),
    });
    return c.json({ removed: { id: result.artifact.id, seq: result.thread.rolloutSeq }, thread: result.thread });
  });
}

function writeBody(result: ArtifactWriteResult) {
  return { artifact: result.artifact, thread: result.thread };
}
