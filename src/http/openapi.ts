import { toJsonSchema } from "@valibot/to-json-schema";
import type { GenericSchema } from "valibot";
import {
  ArtifactSchema,
  CreateArtifactBodySchema,
  CreateWebhookBodySchema,
  DeleteThreadResponseSchema,
  DeliveriesResponseSchema,
  ForkBodySchema,
  GetArtifactResponseSchema,
  HealthSchema,
  ListThreadsResponseSchema,
  ListWebhooksResponseSchema,
  LivenessSchema,
  MergePatchBodySchema,
  ProblemSchema,
  ReadinessSchema,
  ReadThreadResponseSchema,
  RemoveResponseSchema,
  ReplayBodySchema,
  ReplayResponseSchema,
  ThreadIdSchema,
  UpdateArtifactBodySchema,
  UpdateWebhookBodySchema,
  VersionsResponseSchema,
  WebhookIdSchema,
  WebhookResponseSchema,
  WebhookSchema,
  WebhookSecretResponseSchema,
  WebhookWithSecretSchema,
  WriteResponseSchema,
} from "../model/schemas.ts";

/** JSON Schema of a valibot schema, for OpenAPI 3.1 (which uses JSON Schema 2020-12 as is). */
function schema(s: GenericSchema): Record<string, unknown> {
  const { $schema: _ignored, ...rest } = toJsonSchema(s, { errorMode: "ignore", typeMode: "output" }) as Record<
    string,
    unknown
  >;
  return rest;
}

/**
 * A webhook body's JSON Schema with what its valibot checks say and JSON Schema can too:
 * threads and events unique, the description's bound in bytes, a PATCH not empty.
 */
function webhookBody(s: GenericSchema, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const out = schema(s) as { properties: Record<string, Record<string, unknown>> };
  for (const name of ["threads", "events"]) {
    const property = out.properties[name];
    const array = (property?.anyOf as Record<string, unknown>[] | undefined)?.[0] ?? property;
    if (array) array.uniqueItems = true;
  }
  if (out.properties.description) out.properties.description.description = "at most 512 UTF-8 bytes";
  return { ...out, ...extra };
}

const problem = (description: string) => ({
  description,
  content: { "application/problem+json": { schema: { $ref: "#/components/schemas/Problem" } } },
});
const json = (description: string, ref: string, headers?: Record<string, unknown>) => ({
  description,
  ...(headers ? { headers } : {}),
  content: { "application/json": { schema: { $ref: `#/components/schemas/${ref}` } } },
});
const threadIdParam = { name: "threadId", in: "path", required: true, schema: schema(ThreadIdSchema) };
const artifactIdParam = { name: "artifactId", in: "path", required: true, schema: { type: "string", format: "uuid" } };
const ifMatch = {
  name: "If-Match",
  in: "header",
  required: false,
  schema: { type: "string" },
  description: 'Quoted artifact version, e.g. "3"',
};
const webhookIdParam = { name: "webhookId", in: "path", required: true, schema: schema(WebhookIdSchema) };
const jsonBody = (ref: string) => ({
  required: true,
  content: { "application/json": { schema: { $ref: `#/components/schemas/${ref}` } } },
});
/** Another tenant's webhook, and an id that is not one, answer exactly as an absent one. */
const webhookNotFound = problem("webhook_not_found (also another tenant's webhook, and a malformed id)");
/** The secret travels in these answers only: never cached. */
const noStore = { "Cache-Control": { schema: { type: "string", const: "no-store" } } };

/** The 200 of both event routes. */
const eventStream = {
  description: "the event stream",
  content: { "text/event-stream": { schema: { type: "string" } } },
};

/** Every tenant route is limited (API.md "Rate limits"): its 429 and the headers it carries. */
const rateLimited = {
  ...problem(
    "rate_limited: the tenant's writes or reads bucket is empty, or (event streams) it has as many streams open as it may; nothing was written",
  ),
  headers: {
    "Retry-After": { description: "Seconds until a retry can be admitted", schema: { type: "integer", minimum: 1 } },
    "RateLimit-Policy": { $ref: "#/components/headers/RateLimitPolicy" },
    "RateLimit": { $ref: "#/components/headers/RateLimit" },
  },
};

const errors = {
  "400": problem("invalid_request"),
  "401": problem("unauthorized"),
  "429": rateLimited,
  "503": problem("unavailable (with Retry-After)"),
};

/** `X-Request-Id`, on every request (optional) and every response (always). */
const REQUEST_ID_DESCRIPTION =
  "The request's id: the caller's when it is 1-128 chars of [A-Za-z0-9._:-], else a generated UUID. In every log line of the request and every problem body (requestId).";
const requestIdHeader = { $ref: "#/components/headers/RequestId" };
const requestIdParam = { $ref: "#/components/parameters/RequestId" };

const idempotencyKeyParam = { $ref: "#/components/parameters/IdempotencyKey" };
const IDEMPOTENCY_KEY_DESCRIPTION =
  "1-255 printable ASCII characters. A repeat of this write by the tenant (same route and body) answers what the first answer said and writes nothing, for at least 24 hours, across processes and restarts; the key with another route or body is 422 idempotency_key_reused; on webhook routes, a repeat while the first is still in flight is 409 idempotency_key_in_flight. A refused write does not take its key.";

/**
 * Every operation takes `X-Request-Id` and every response carries it; every write takes
 * `Idempotency-Key`, and may answer 422 idempotency_key_reused.
 */
function withRequestIds(paths: Record<string, Record<string, Record<string, unknown>>>) {
  for (const operations of Object.values(paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      const write = method === "post" || method === "patch" || method === "delete";
      operation.parameters = [
        ...((operation.parameters as unknown[] | undefined) ?? []),
        requestIdParam,
        ...(write ? [idempotencyKeyParam] : []),
      ];
      if (write) {
        const responses = operation.responses as Record<string, Record<string, unknown>>;
        const reused = "idempotency_key_reused: the Idempotency-Key was used for another route or body";
        responses["422"] = responses["422"]
          ? { ...responses["422"], description: `${String(responses["422"].description)}; or ${reused}` }
          : problem(reused);
      }
      for (const response of Object.values(operation.responses as Record<string, Record<string, unknown>>)) {
        response.headers = {
          ...(response.headers as Record<string, unknown> | undefined),
          "X-Request-Id": requestIdHeader,
        };
      }
    }
  }
  return paths;
}

let cached: Record<string, unknown> | undefined;

/** The OpenAPI 3.1 document, generated from the same valibot schemas the handlers validate with. */
export function openApiDocument(): Record<string, unknown> {
  cached ??= {
    openapi: "3.1.0",
    info: {
      title: "Thread artifacts",
      version: "1.0.0",
      description: "Artifacts attached to conversation threads, with a durable patch rollout and live updates.",
    },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      schemas: {
        Artifact: schema(ArtifactSchema),
        CreateArtifactBody: schema(CreateArtifactBodySchema),
        UpdateArtifactBody: schema(UpdateArtifactBodySchema),
        MergePatchBody: schema(MergePatchBodySchema),
        VersionsResponse: schema(VersionsResponseSchema),
        ForkBody: schema(ForkBodySchema),
        WriteResponse: schema(WriteResponseSchema),
        RemoveResponse: schema(RemoveResponseSchema),
        DeleteThreadResponse: schema(DeleteThreadResponseSchema),
        ReadThreadResponse: schema(ReadThreadResponseSchema),
        GetArtifactResponse: schema(GetArtifactResponseSchema),
        ListThreadsResponse: schema(ListThreadsResponseSchema),
        Webhook: schema(WebhookSchema),
        WebhookWithSecret: schema(WebhookWithSecretSchema),
        CreateWebhookBody: webhookBody(CreateWebhookBodySchema),
        UpdateWebhookBody: webhookBody(UpdateWebhookBodySchema, { minProperties: 1 }),
        ReplayBody: schema(ReplayBodySchema),
        WebhookResponse: schema(WebhookResponseSchema),
        WebhookSecretResponse: schema(WebhookSecretResponseSchema),
        ListWebhooksResponse: schema(ListWebhooksResponseSchema),
        DeliveriesResponse: schema(DeliveriesResponseSchema),
        ReplayResponse: schema(ReplayResponseSchema),
        Health: schema(HealthSchema),
        Liveness: schema(LivenessSchema),
        Readiness: schema(ReadinessSchema),
        Problem: schema(ProblemSchema),
      },
      headers: {
        RequestId: { description: REQUEST_ID_DESCRIPTION, schema: { type: "string", maxLength: 128 } },
        RateLimitPolicy: {
          description:
            'The limit that applies (IETF draft-ietf-httpapi-ratelimit-headers): `"writes";q=200;w=2` is a bucket of 200 refilled in 2 s (100/s), `"streams";q=100` a cap of 100 open streams. On every answer of a limited route when limits are configured.',
          schema: { type: "string" },
        },
        RateLimit: {
          description:
            'What is left of it: `"writes";r=57;t=1` (57 requests now; full again in 1 s), `"streams";r=3` (3 more streams).',
          schema: { type: "string" },
        },
      },
      parameters: {
        IdempotencyKey: {
          name: "Idempotency-Key",
          in: "header",
          required: false,
          description: IDEMPOTENCY_KEY_DESCRIPTION,
          schema: { type: "string", minLength: 1, maxLength: 255, pattern: "^[\\x20-\\x7e]+$" },
        },
        RequestId: {
          name: "X-Request-Id",
          in: "header",
          required: false,
          description: REQUEST_ID_DESCRIPTION,
          schema: { type: "string" },
        },
      },
    },
    security: [{ bearer: [] }],
    paths: withRequestIds({
      "/v1/threads/{threadId}/artifacts": {
        post: {
          operationId: "createArtifact",
          parameters: [threadIdParam],
          requestBody: {
            required: true,
            content: { "application/json": { schema: { $ref: "#/components/schemas/CreateArtifactBody" } } },
          },
          responses: {
            "201": json("created", "WriteResponse", { Location: { schema: { type: "string" } } }),
            "200": json("idempotent retry: the artifact already exists with an equal payload", "WriteResponse"),
            "409": problem("identity_conflict"),
            "413": problem("payload_too_large"),
            "415": problem("unsupported_media_type"),
            "422": problem("thread_full"),
            ...errors,
          },
        },
      },
      "/v1/threads/{threadId}": {
        get: {
          operationId: "readThread",
          parameters: [
            threadIdParam,
            { name: "consistency", in: "query", schema: { enum: ["strong", "cache"], default: "strong" } },
            { name: "minSeq", in: "query", schema: { type: "integer", minimum: 0 } },
            {
              name: "atSeq",
              in: "query",
              description: "the thread as it was right after this seq (immutable; not with minSeq)",
              schema: { type: "integer", minimum: 0 },
            },
            { name: "If-None-Match", in: "header", schema: { type: "string" } },
          ],
          responses: {
            "200": json("the thread", "ReadThreadResponse", {
              ETag: { schema: { type: "string" } },
              "X-Artifacts-Source": { schema: { enum: ["cache", "rollout", "repaired"] } },
            }),
            "304": { description: "not modified" },
            "404": problem("thread_not_found"),
            ...errors,
          },
        },
        delete: {
          operationId: "deleteThread",
          description:
            "Ends the thread's life: a delete commit at the next seq, then its earlier objects are removed; reads answer 404, streams get thread-deleted.",
          parameters: [threadIdParam, ifMatch],
          responses: {
            "200": json("deleted", "DeleteThreadResponse"),
            "404": problem("thread_not_found"),
            "412": problem("version_conflict"),
            ...errors,
          },
        },
      },
      "/v1/threads/{threadId}/artifacts/{artifactId}": {
        get: {
          operationId: "getArtifact",
          parameters: [threadIdParam, artifactIdParam],
          responses: {
            "200": json("the artifact", "GetArtifactResponse"),
            "404": problem("thread_not_found or artifact_not_found"),
            ...errors,
          },
        },
        patch: {
          operationId: "updateArtifact",
          parameters: [threadIdParam, artifactIdParam, ifMatch],
          requestBody: {
            required: true,
            content: {
              "application/json": { schema: { $ref: "#/components/schemas/UpdateArtifactBody" } },
              // RFC 7396: merged into the stored payload inside the write group.
              "application/merge-patch+json": { schema: { $ref: "#/components/schemas/MergePatchBody" } },
            },
          },
          responses: {
            "200": json("updated", "WriteResponse"),
            "404": problem("thread_not_found or artifact_not_found"),
            "412": problem("version_conflict"),
            "413": problem("payload_too_large"),
            "415": problem("unsupported_media_type"),
            ...errors,
          },
        },
        delete: {
          operationId: "removeArtifact",
          parameters: [threadIdParam, artifactIdParam, ifMatch],
          responses: {
            "200": json("removed", "RemoveResponse"),
            "404": problem("thread_not_found or artifact_not_found"),
            "412": problem("version_conflict"),
            ...errors,
          },
        },
      },
      "/v1/threads/{threadId}/fork": {
        post: {
          operationId: "forkThread",
          parameters: [threadIdParam],
          requestBody: {
            required: true,
            content: { "application/json": { schema: { $ref: "#/components/schemas/ForkBody" } } },
          },
          responses: {
            "201": json("the new thread, with forkedFrom", "ReadThreadResponse", {
              Location: { schema: { type: "string" } },
            }),
            "404": problem("thread_not_found (the source, or its atSeq)"),
            "409": problem("thread_exists"),
            ...errors,
          },
        },
      },
      "/v1/threads/{threadId}/artifacts/{artifactId}/versions": {
        get: {
          operationId: "artifactVersions",
          parameters: [
            threadIdParam,
            artifactIdParam,
            { name: "limit", in: "query", schema: { type: "integer", minimum: 1, maximum: 200, default: 50 } },
            { name: "cursor", in: "query", schema: { type: "string" } },
          ],
          responses: {
            "200": json("every version, oldest first (a remove is its own entry)", "VersionsResponse"),
            "404": problem("thread_not_found or artifact_not_found"),
            ...errors,
          },
        },
      },
      "/v1/threads": {
        get: {
          operationId: "listThreads",
          parameters: [
            { name: "limit", in: "query", schema: { type: "integer", minimum: 1, maximum: 200, default: 50 } },
            { name: "cursor", in: "query", schema: { type: "string" } },
          ],
          responses: { "200": json("threads by updatedAt descending", "ListThreadsResponse"), ...errors },
        },
      },
      "/v1/threads/{threadId}/events": {
        get: {
          operationId: "artifactEvents",
          description:
            "artifact-updated Server-Sent Events after the resume point (Last-Event-ID, else since, else 0), each once, in seq order, gapless.",
          parameters: [
            threadIdParam,
            { name: "since", in: "query", schema: { type: "integer", minimum: 0 } },
            { name: "Last-Event-ID", in: "header", schema: { type: "string" } },
          ],
          responses: { "200": eventStream, ...errors },
        },
      },
      "/v1/events": {
        get: {
          operationId: "manyThreadEvents",
          description:
            "artifact-updated Server-Sent Events of up to 100 threads (MAX_STREAM_THREADS may allow fewer) on one connection, each thread's in seq order, gapless; every event's id is a resume token for the whole set.",
          parameters: [
            {
              name: "threads",
              in: "query",
              required: true,
              description: "comma-separated thread ids, each optionally id:seq (start after seq); at most 100",
              schema: { type: "string" },
            },
            { name: "Last-Event-ID", in: "header", schema: { type: "string" } },
          ],
          responses: { "200": eventStream, ...errors },
        },
      },
      "/v1/webhooks": {
        post: {
          operationId: "createWebhook",
          description:
            "Subscribes a URL to the tenant's events (threads absent: every thread; events absent: both). The URL must be https:// (http:// to loopback hosts only with WEBHOOK_ALLOW_HTTP_LOOPBACK=1) and reach no private, link-local or loopback address. The secret is shown here and on rotate-secret only.",
          requestBody: jsonBody("CreateWebhookBody"),
          responses: {
            "201": json("created, with its secret", "WebhookSecretResponse", {
              Location: { schema: { type: "string" } },
              ...noStore,
            }),
            "413": problem("payload_too_large"),
            "415": problem("unsupported_media_type"),
            "422": problem("too_many_webhooks: the tenant holds MAX_WEBHOOKS_PER_TENANT"),
            ...errors,
          },
        },
        get: {
          operationId: "listWebhooks",
          parameters: [
            { name: "limit", in: "query", schema: { type: "integer", minimum: 1, maximum: 200, default: 50 } },
            { name: "cursor", in: "query", schema: { type: "string" } },
          ],
          responses: {
            "200": json(
              "the tenant's webhooks by id, i.e. in creation order (ids are time-ordered); no secrets",
              "ListWebhooksResponse",
            ),
            ...errors,
          },
        },
      },
      "/v1/webhooks/{webhookId}": {
        get: {
          operationId: "getWebhook",
          parameters: [webhookIdParam],
          responses: { "200": json("the webhook (no secret)", "WebhookResponse"), "404": webhookNotFound, ...errors },
        },
        patch: {
          operationId: "updateWebhook",
          description:
            'Changes any of url, threads (null: every thread), events, description, status. Status "active" resumes a paused or failing webhook where its delivery stopped.',
          parameters: [webhookIdParam],
          requestBody: jsonBody("UpdateWebhookBody"),
          responses: {
            "200": json("updated (no secret)", "WebhookResponse"),
            "404": webhookNotFound,
            "413": problem("payload_too_large"),
            "415": problem("unsupported_media_type"),
            ...errors,
          },
        },
        delete: {
          operationId: "deleteWebhook",
          description: "Removes the subscription and its delivery cursors; nothing more is delivered.",
          parameters: [webhookIdParam],
          responses: { "204": { description: "deleted" }, "404": webhookNotFound, ...errors },
        },
      },
      "/v1/webhooks/{webhookId}/rotate-secret": {
        post: {
          operationId: "rotateWebhookSecret",
          description: "A new secret signs every delivery attempt from now on; the old one no longer does.",
          parameters: [webhookIdParam],
          responses: {
            "200": json("the webhook with its new secret", "WebhookSecretResponse", noStore),
            "404": webhookNotFound,
            ...errors,
          },
        },
      },
      "/v1/webhooks/{webhookId}/deliveries": {
        get: {
          operationId: "webhookDeliveries",
          parameters: [
            webhookIdParam,
            { name: "limit", in: "query", schema: { type: "integer", minimum: 1, maximum: 100, default: 20 } },
          ],
          responses: {
            "200": json("recent delivery attempts, newest first", "DeliveriesResponse"),
            "404": webhookNotFound,
            ...errors,
          },
        },
      },
      "/v1/webhooks/{webhookId}/replay": {
        post: {
          operationId: "replayWebhook",
          description:
            "Delivers the thread's events after since again (the webhook's cursor for the thread moves back to since).",
          parameters: [webhookIdParam],
          requestBody: jsonBody("ReplayBody"),
          responses: {
            "202": json("accepted: delivery resumes after since", "ReplayResponse"),
            "404": webhookNotFound,
            "413": problem("payload_too_large"),
            "415": problem("unsupported_media_type"),
            ...errors,
          },
        },
      },
      "/healthz": {
        get: {
          operationId: "health",
          security: [],
          responses: { "200": json("healthy", "Health"), "503": json("rollout store down", "Health") },
        },
      },
      "/livez": {
        get: {
          operationId: "liveness",
          description: "The process serves (no store is asked). Not logged per request.",
          security: [],
          responses: { "200": json("live", "Liveness") },
        },
      },
      "/readyz": {
        get: {
          operationId: "readiness",
          description:
            "Ready for traffic: the rollout store answers within 2 s (the cache may be down: the service works without it) and no shutdown has started. Not logged per request.",
          security: [],
          responses: {
            "200": json("ready", "Readiness"),
            "503": json("the rollout store does not answer within 2 s, or a shutdown has started", "Readiness"),
          },
        },
      },
    }),
  };
  return cached;
}
