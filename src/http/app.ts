import { Hono } from "hono";
import { cors } from "hono/cors";
import type { Context } from "hono";
import type { ThreadState } from "../model/artifact.ts";
import { threadViewJson, toThreadView } from "../model/artifact.ts";
import type { WriteCommand } from "../model/decide.ts";
import { ProblemError } from "../model/errors.ts";
import { jsonDepthExceeds, jsonHasNonFiniteNumber, type JsonValue, MAX_JSON_DEPTH, utf8Bytes } from "../model/json.ts";
import {
  ArtifactIdSchema,
  CreateArtifactBodySchema,
  ListThreadsQuerySchema,
  ReadThreadQuerySchema,
  ThreadIdSchema,
  UpdateArtifactBodySchema,
} from "../model/schemas.ts";
import type { FeedHub } from "../live/feed.ts";
import type { Authenticator } from "./auth/authenticator.ts";
import { resumePoint, type StreamOptions, streamThreadEvents } from "../live/sse.ts";
import type { ArtifactService, ServiceLimits, WriteResult } from "../service/artifact-service.ts";
import { readJsonBody } from "./body.ts";
import { CursorCodec } from "./cursor.ts";
import { openApiDocument } from "./openapi.ts";
import { LIVE_PAGE } from "./page.ts";
import { matchesIfNoneMatch, parseIfMatch } from "./preconditions.ts";
import { problemResponse } from "./problem.ts";
import { parseOr400 } from "./validate.ts";

export interface AppOptions {
  service: ArtifactService;
  /** The bounds bodies are checked against. */
  limits: ServiceLimits;
  /** Signs list cursors. Processes serving one deployment must share it. */
  cursorSecret: string;
  /** The live stream's feeds and timing. */
  live: { hub: FeedHub; options: StreamOptions };
  /** Null: no authentication configured, everything is tenant `local` (loopback only: the runtime enforces it). */
  authenticator: Authenticator | null;
  /** Origins allowed by CORS (`*` for any); empty: no CORS headers at all. */
  corsOrigins: readonly string[];
  /** Serve only one edge function's route (and /healthz); default: the whole API. */
  only?: EdgeFunction;
  /** Where unexpected errors go; never sent to the client. */
  logError?: (error: unknown) => void;
}

export type AppEnv = { Variables: { tenant: string } };

/** Room for artifactType, identityKey and JSON punctuation around a full-size payload. */
const BODY_OVERHEAD_BYTES = 16 * 1024;

/** Every route of API.md and the methods it allows, for 405s with `Allow`. */
const ROUTES: ReadonlyArray<readonly [string, string]> = [
  ["/v1/threads/:threadId/artifacts", "POST"],
  ["/v1/threads/:threadId/artifacts/:artifactId", "GET, HEAD, PATCH, DELETE"],
  ["/v1/threads/:threadId/events", "GET"],
  ["/v1/threads/:threadId", "GET, HEAD"],
  ["/v1/threads", "GET, HEAD"],
  ["/v1/openapi.json", "GET, HEAD"],
  ["/healthz", "GET, HEAD"],
  ["/", "GET, HEAD"],
];

/** Routes that need no token: they hold no tenant's data. */
const PUBLIC_PATHS = new Set(["/", "/healthz", "/v1/openapi.json"]);

function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header ?? "");
  return match?.[1];
}

/** The single-route edge functions of functions/, and the one route each serves. */
export const EDGE_FUNCTIONS = {
  "create-artifact": { method: "POST", path: "/v1/threads/:threadId/artifacts" },
  "read-thread": { method: "GET", path: "/v1/threads/:threadId" },
  "artifact-events": { method: "GET", path: "/v1/threads/:threadId/events" },
} as const;
export type EdgeFunction = keyof typeof EDGE_FUNCTIONS;

export function createApp(options: AppOptions): Hono<AppEnv> {
  const { service } = options;
  const cursors = new CursorCodec(options.cursorSecret);
  const maxBodyBytes = options.limits.maxPayloadBytes + BODY_OVERHEAD_BYTES;
  const logError = options.logError ?? ((error: unknown) => console.error("unexpected error", describe(error)));
  const app = new Hono<AppEnv>();

  if (options.only) {
    const route = EDGE_FUNCTIONS[options.only];
    app.use(async (c, next) => {
      if (c.req.path === "/healthz" || routeMatches(route.path, c.req.path)) return next();
      throw new ProblemError("invalid_request", `this function serves only ${route.method} ${route.path}`, {
        status: 404,
      });
    });
  }

  if (options.corsOrigins.length > 0) {
    const origins = options.corsOrigins;
    app.use(
      cors({
        origin: (origin) => (origins.includes("*") ? "*" : origins.includes(origin) ? origin : null),
        allowMethods: ["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"],
        allowHeaders: ["Authorization", "Content-Type", "If-Match", "If-None-Match", "Last-Event-ID"],
        exposeHeaders: ["ETag", "Location", "X-Artifacts-Source", "Retry-After", "WWW-Authenticate"],
        maxAge: 600,
      }),
    );
  }

  app.use(async (c, next) => {
    const authenticator = options.authenticator;
    if (!authenticator) {
      c.set("tenant", "local");
      return next();
    }
    // The page, the health check and the API description hold no tenant data.
    if (PUBLIC_PATHS.has(c.req.path) || c.req.method === "OPTIONS") return next();
    const token = bearerToken(c.req.header("authorization")) ??
      // EventSource cannot set headers: the events route alone also takes ?access_token=.
      (routeMatches(EDGE_FUNCTIONS["artifact-events"].path, c.req.path) ? c.req.query("access_token") : undefined);
    const tenant = token ? await authenticator.tenantOf(token) : null;
    if (!tenant) {
      throw new ProblemError("unauthorized", token ? "the bearer token is not valid" : "a bearer token is required", {
        headers: { "www-authenticate": token ? 'Bearer error="invalid_token"' : "Bearer" },
      });
    }
    c.set("tenant", tenant);
    return next();
  });

  app.post("/v1/threads/:threadId/artifacts", async (c) => {
    const threadId = threadIdOf(c);
    const body = parseOr400(CreateArtifactBodySchema, await readJsonBody(c.req.raw, maxBodyBytes), "body");
    const payload = checkPayload(body.payload, options.limits.maxPayloadBytes);
    const result = await service.write(c.get("tenant"), threadId, {
      kind: "create",
      artifactType: body.artifactType,
      identityKey: body.identityKey ?? null,
      payload,
    });
    if (result.created) c.header("location", `/v1/threads/${threadId}/artifacts/${result.artifact.id}`);
    return c.json(writeBody(result), result.created ? 201 : 200);
  });

  app.get("/v1/threads/:threadId", async (c) => {
    const threadId = threadIdOf(c);
    const query = parseOr400(ReadThreadQuerySchema, c.req.query(), "query");
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

  app.get("/v1/threads/:threadId/artifacts/:artifactId", async (c) => {
    const threadId = threadIdOf(c);
    const artifactId = artifactIdOf(c);
    const { artifact, source } = await service.getArtifact(c.get("tenant"), threadId, artifactId);
    c.header("etag", `"${artifact.version}"`);
    c.header("x-artifacts-source", source);
    return c.json({ artifact });
  });

  app.patch("/v1/threads/:threadId/artifacts/:artifactId", async (c) => {
    const threadId = threadIdOf(c);
    const artifactId = artifactIdOf(c);
    const precondition = parseIfMatch(c.req.header("if-match"));
    const body = parseOr400(UpdateArtifactBodySchema, await readJsonBody(c.req.raw, maxBodyBytes), "body");
    const payload = checkPayload(body.payload, options.limits.maxPayloadBytes);
    const command: WriteCommand = { kind: "update", artifactId, payload, precondition };
    return c.json(writeBody(await service.write(c.get("tenant"), threadId, command)));
  });

  app.delete("/v1/threads/:threadId/artifacts/:artifactId", async (c) => {
    const threadId = threadIdOf(c);
    const artifactId = artifactIdOf(c);
    const precondition = parseIfMatch(c.req.header("if-match"));
    const result = await service.write(c.get("tenant"), threadId, { kind: "remove", artifactId, precondition });
    return c.json({ removed: { id: result.artifact.id, seq: result.thread.rolloutSeq }, thread: result.thread });
  });

  app.get("/v1/threads", async (c) => {
    const tenant = c.get("tenant");
    const query = parseOr400(ListThreadsQuerySchema, c.req.query(), "query");
    const after = query.cursor === undefined ? null : await cursors.decode(tenant, query.cursor);
    const page = await service.listThreads(tenant, { after, limit: query.limit });
    return c.json({
      threads: page.threads.map((state: ThreadState) => toThreadView(state)),
      nextCursor: page.next ? await cursors.encode(tenant, page.next) : null,
    });
  });

  app.get("/v1/threads/:threadId/events", (c) => {
    const threadId = threadIdOf(c);
    const resumeAfter = resumePoint(c.req.header("last-event-id"), c.req.query("since"));
    if (resumeAfter === null) {
      throw new ProblemError("invalid_request", "Last-Event-ID and since must be a non-negative integer seq");
    }
    return streamThreadEvents(c, { tenant: c.get("tenant"), threadId, resumeAfter }, {
      hub: options.live.hub,
      reader: service,
      options: options.live.options,
    });
  });

  app.get("/", (c) => c.html(LIVE_PAGE));

  app.get("/v1/openapi.json", (c) => c.json(openApiDocument()));

  app.get("/healthz", async (c) => {
    const health = await service.health();
    return c.json({ ok: health.rollout === "up", ...health }, health.rollout === "up" ? 200 : 503);
  });

  for (const [path, allow] of ROUTES) {
    app.all(path, () => {
      throw new ProblemError("invalid_request", `method not allowed; this route allows ${allow}`, { status: 405 });
    });
  }

  app.notFound((c) =>
    problemResponse(new ProblemError("invalid_request", `no route ${c.req.method} ${c.req.path}`, { status: 404 }))
  );

  app.onError((error, c) => {
    if (error instanceof ProblemError) {
      const allow = error.status === 405 ? ROUTES.find(([path]) => routeMatches(path, c.req.path))?.[1] : undefined;
      return problemResponse(error, { ...error.headers, ...(allow ? { allow } : {}) });
    }
    logError(error);
    return problemResponse(
      new ProblemError("unavailable", "a storage backend failed; retry", { retryAfterSeconds: 1 }),
    );
  });

  return app;
}

function threadIdOf(c: Context<AppEnv>): string {
  return parseOr400(ThreadIdSchema, c.req.param("threadId"), "path threadId");
}

function artifactIdOf(c: Context<AppEnv>): string {
  return parseOr400(ArtifactIdSchema, c.req.param("artifactId"), "path artifactId").toLowerCase();
}

function checkPayload(payload: unknown, maxBytes: number): JsonValue {
  if (jsonDepthExceeds(payload, MAX_JSON_DEPTH)) {
    throw new ProblemError("invalid_request", `payload nests arrays/objects more than ${MAX_JSON_DEPTH} deep`);
  }
  if (jsonHasNonFiniteNumber(payload)) {
    throw new ProblemError(
      "invalid_request",
      "payload has a number outside the range of a 64-bit float (it would not round-trip)",
    );
  }
  if (utf8Bytes(JSON.stringify(payload)) > maxBytes) {
    throw new ProblemError("payload_too_large", `payload serializes to more than ${maxBytes} bytes`);
  }
  return payload as JsonValue;
}

function writeBody(result: WriteResult) {
  return { artifact: result.artifact, thread: result.thread };
}

function routeMatches(pattern: string, path: string): boolean {
  const a = pattern.split("/");
  const b = path.split("/");
  return a.length === b.length && a.every((part, i) => part.startsWith(":") || part === b[i]);
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
