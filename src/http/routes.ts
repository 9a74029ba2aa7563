/**
 * Every route of API.md in one table: the handlers register on these paths, 405s list
 * these methods, authentication skips the public ones, and the events route alone also
 * takes `?access_token=`. A new route is one row here.
 */
export const ROUTES = {
  createArtifact: { path: "/v1/threads/:threadId/artifacts", methods: ["POST"] },
  fork: { path: "/v1/threads/:threadId/fork", methods: ["POST"] },
  versions: { path: "/v1/threads/:threadId/artifacts/:artifactId/versions", methods: ["GET", "HEAD"] },
  artifact: { path: "/v1/threads/:threadId/artifacts/:artifactId", methods: ["GET", "HEAD", "PATCH", "DELETE"] },
  /** EventSource cannot set headers: its token may come in the query. */
  events: { path: "/v1/threads/:threadId/events", methods: ["GET"], queryToken: true, stream: true },
  thread: { path: "/v1/threads/:threadId", methods: ["GET", "HEAD", "DELETE"] },
  /** Up to 100 threads on one stream; EventSource again, so the query token too. */
  manyEvents: { path: "/v1/events", methods: ["GET"], queryToken: true, stream: true },
  threads: { path: "/v1/threads", methods: ["GET", "HEAD"] },
  /** API.md "Webhooks": only where the runtime wires webhooks (Node, Deno); elsewhere the generic 404. */
  webhookRotateSecret: { path: "/v1/webhooks/:webhookId/rotate-secret", methods: ["POST"], feature: "webhooks" },
  webhookDeliveries: { path: "/v1/webhooks/:webhookId/deliveries", methods: ["GET", "HEAD"], feature: "webhooks" },
  webhookReplay: { path: "/v1/webhooks/:webhookId/replay", methods: ["POST"], feature: "webhooks" },
  webhook: { path: "/v1/webhooks/:webhookId", methods: ["GET", "HEAD", "PATCH", "DELETE"], feature: "webhooks" },
  webhooks: { path: "/v1/webhooks", methods: ["GET", "HEAD", "POST"], feature: "webhooks" },
  openapi: { path: "/v1/openapi.json", methods: ["GET", "HEAD"], public: true },
  health: { path: "/healthz", methods: ["GET", "HEAD"], public: true, probe: true },
  /** The process serves (touches no store). */
  livez: { path: "/livez", methods: ["GET", "HEAD"], public: true, probe: true },
  /** The rollout store answers and no shutdown has started. */
  readyz: { path: "/readyz", methods: ["GET", "HEAD"], public: true, probe: true },
  page: { path: "/", methods: ["GET", "HEAD"], public: true },
} as const satisfies Record<string, Route>;

export interface Route {
  path: string;
  methods: readonly string[];
  /** Holds no tenant's data: no token needed. */
  public?: boolean;
  /** Also takes the token as `?access_token=`. */
  queryToken?: boolean;
  /** A health probe: asked every few seconds by the platform, so never logged per request. */
  probe?: boolean;
  /** An event stream: counts under its tenant's open-stream cap while it is open. */
  stream?: boolean;
  /** Served only when the app is given this feature (`createApp`'s `webhooks`); otherwise the generic 404. */
  feature?: "webhooks";
}

export type RouteName = keyof typeof ROUTES;

/** The probes' paths (/healthz, /livez, /readyz): every edge function serves them too. */
export const PROBE_PATHS: ReadonlySet<string> = new Set(
  Object.values(ROUTES as Record<string, Route>).filter((route) => route.probe).map((route) => route.path),
);

/** The single-route edge functions of functions/, and the route each serves (plus the probes). */
export const EDGE_FUNCTIONS = {
  "create-artifact": "createArtifact",
  "read-thread": "thread",
  "artifact-events": "events",
} as const satisfies Record<string, RouteName>;

export type EdgeFunction = keyof typeof EDGE_FUNCTIONS;

/** The route a request path is on, if any (most specific first: the table is ordered so). */
export function routeOf(path: string): Route | undefined {
  return Object.values(ROUTES).find((route: Route) => pathMatches(route.path, path));
}

export function pathMatches(pattern: string, path: string): boolean {
  const a = pattern.split("/");
  const b = path.split("/");
  return a.length === b.length && a.every((part, i) => part.startsWith(":") || part === b[i]);
}
