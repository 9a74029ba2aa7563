import { Hono } from "hono";
import { cors } from "hono/cors";
import { LinearRouter } from "hono/router/linear-router";
import { SmartRouter } from "hono/router/smart-router";
import { TrieRouter } from "hono/router/trie-router";
import type { FeedSource } from "../live/feed.ts";
import type { StreamOptions } from "./sse.ts";
import { isReported } from "../logging/faults.ts";
import { logger } from "../logging/logger.ts";
import { describeError, ProblemError } from "../model/errors.ts";
import { type Metrics, noMetrics } from "../model/metrics.ts";
import type { ArtifactService, ServiceLimits } from "../service/artifact-service.ts";
import type { Authenticator } from "./auth/authenticator.ts";
import { accessLog } from "./access-log.ts";
import { bearerAuth } from "./auth/middleware.ts";
import { rateLimits } from "./rate-limit.ts";
import type { TenantAdmission } from "../limits/port.ts";
import { CursorCodec } from "./cursor.ts";
import { observeRequests } from "./observe.ts";
import { problemResponse } from "./problem.ts";
import { REQUEST_ID_HEADER, requestId } from "./request-id.ts";
import { ResumeTokenCodec } from "./resume-token.ts";
import { EDGE_FUNCTIONS, type EdgeFunction, pathMatches, PROBE_PATHS, type Route, routeOf, ROUTES } from "./routes.ts";
import { artifactRoutes } from "./routes/artifacts.ts";
import { eventRoutes } from "./routes/events.ts";
import { metaRoutes } from "./routes/meta.ts";
import { threadRoutes } from "./routes/threads.ts";
import { MAX_THREADS_PER_STREAM } from "./thread-set.ts";
import { type WebhookOptions, webhookRoutes } from "./routes/webhooks.ts";

export type { EdgeFunction, WebhookOptions };

export interface AppOptions {
  service: ArtifactService;
  /** The bounds bodies are checked against. */
  limits: ServiceLimits;
  /** Signs list cursors and multi-thread resume tokens. Processes serving one deployment must share it. */
  cursorSecret: string;
  /** The live stream's feeds and timing. */
  live: {
    feeds: FeedSource;
    options: StreamOptions;
    /** The most threads one `GET /v1/events` stream may follow (default 100: API.md). */
    maxStreamThreads?: number;
  };
  /** Null: no authentication configured, everything is tenant `local` (loopback only: the runtime enforces it). */
  authenticator: Authenticator | null;
  /** Origins allowed by CORS (`*` for any); empty: no CORS headers at all. */
  corsOrigins: readonly string[];
  /** Serve only one edge function's route (and the probes); default: the whole API. */
  only?: EdgeFunction;
  /**
   * The app serves one request and is built again for the next (Workers): routes are
   * matched by Hono's LinearRouter (`hono/quick`'s), which has nothing to build. The
   * default RegExpRouter compiles every route on its first match: ~0.6 ms of a Worker's
   * CPU per request when the app lived for one request (the edge bench's profile).
   */
  onePerRequest?: boolean;
  /** Where requests and streams are reported (default: nowhere). */
  metrics?: Metrics;
  /** Per-tenant rate limits and stream caps (http/rate-limit.ts); absent or null: none. */
  admission?: TenantAdmission | null;
  /**
   * API.md "Webhooks": the subscriptions and where their deliveries are. Absent (Workers,
   * for now): the webhook routes are not served, and answer the generic 404 of an unknown route.
   */
  webhooks?: WebhookOptions;
}

export type AppEnv = {
  Variables: {
    tenant: string;
    requestId: string;
    traceId?: string;
    /** Set on an event stream's request: the stream calls it once when it ends (http/rate-limit.ts). */
    streamClosed?: () => void;
  };
};

const log = logger("http");

/** The Hono app of API.md: middleware (one route only, CORS, authentication), the routes, and errors as problem+json. */
export function createApp(options: AppOptions): Hono<AppEnv> {
  const { service } = options;
  const app = new Hono<AppEnv>(
    options.onePerRequest ? { router: new SmartRouter({ routers: [new LinearRouter(), new TrieRouter()] }) } : {},
  );
  const metrics = options.metrics ?? noMetrics;

  // Outermost: every request timed, and its server span active for all that follows.
  app.use(observeRequests(metrics));
  // The request id around all the rest (every response and log line has it), then the access line.
  app.use(requestId());
  app.use(accessLog());
  if (options.only) app.use(onlyRoute(options.only));
  if (options.corsOrigins.length > 0) app.use(corsFor(options.corsOrigins));
  app.use(bearerAuth(options.authenticator));
  // Before any handler: a refused request touches no store.
  if (options.admission) app.use(rateLimits(options.admission, metrics));

  const cursors = new CursorCodec(options.cursorSecret);
  artifactRoutes(app, { service, limits: options.limits, cursors });
  threadRoutes(app, { service, cursors });
  eventRoutes(app, {
    service,
    feeds: options.live.feeds,
    options: options.live.options,
    tokens: new ResumeTokenCodec(options.cursorSecret),
    metrics,
    maxStreamThreads: options.live.maxStreamThreads ?? MAX_THREADS_PER_STREAM,
  });
  metaRoutes(app, { service, feeds: options.live.feeds });
  if (options.webhooks) webhookRoutes(app, { ...options.webhooks, cursors });

  for (const route of Object.values(ROUTES) as Route[]) {
    if (route.feature === "webhooks" && !options.webhooks) continue;
    app.all(route.path, () => {
      throw new ProblemError("invalid_request", `method not allowed; this route allows ${route.methods.join(", ")}`, {
        status: 405,
      });
    });
  }

  app.notFound((c) =>
    problemResponse(
      new ProblemError("invalid_request", `no route ${c.req.method} ${c.req.path}`, { status: 404 }),
      {},
      c.get("requestId"),
    )
  );

  app.onError((error, c) => {
    if (error instanceof ProblemError) {
      const allow = error.status === 405 ? routeOf(c.req.path)?.methods.join(", ") : undefined;
      return problemResponse(error, allow ? { allow } : {}, c.get("requestId"));
    }
    // A store fault was logged where it happened, once per burst: not again for every request it fails.
    if (isReported(error)) log.debug("request failed on a store fault", { error: describeError(error) });
    else log.error("unexpected error", { error: describeError(error) });
    return problemResponse(
      new ProblemError("unavailable", "a storage backend failed; retry", { retryAfterSeconds: 1 }),
      {},
      c.get("requestId"),
    );
  });

  return app;
}

/** An edge function serves its one route and the probes; anything else is a 404. */
function onlyRoute(only: EdgeFunction) {
  const route = ROUTES[EDGE_FUNCTIONS[only]];
  return async function onlyRoute(c: { req: { path: string } }, next: () => Promise<void>) {
    if (PROBE_PATHS.has(c.req.path) || pathMatches(route.path, c.req.path)) return next();
    throw new ProblemError("invalid_request", `this function serves only ${route.methods[0]} ${route.path}`, {
      status: 404,
    });
  };
}

/** The allowlist of CORS_ORIGINS: exact origins or `*`, every method, the headers the API reads and sets. */
function corsFor(origins: readonly string[]) {
  return cors({
    origin: (origin) => (origins.includes("*") ? "*" : origins.includes(origin) ? origin : null),
    allowMethods: ["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"],
    allowHeaders: [
      "Authorization",
      "Content-Type",
      "If-Match",
      "If-None-Match",
      "Idempotency-Key",
      "Last-Event-ID",
      REQUEST_ID_HEADER,
    ],
    exposeHeaders: [
      "ETag",
      "Location",
      "X-Artifacts-Source",
      "Retry-After",
      "WWW-Authenticate",
      "RateLimit",
      "RateLimit-Policy",
      REQUEST_ID_HEADER,
    ],
    maxAge: 600,
  });
}
