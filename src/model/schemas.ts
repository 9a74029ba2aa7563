import * as v from "valibot";
import { THREAD_ID_PATTERN, UUID_PATTERN } from "./ids.ts";
import { WEBHOOK_EVENTS } from "./webhook.ts";
import { WEBHOOK_ID_PATTERN } from "./webhook-ids.ts";

/**
 * The valibot schemas of API.md: the HTTP layer validates with them and the OpenAPI
 * document is generated from them, so the two cannot drift apart.
 */

const NO_CONTROL_CHARACTERS = /^[^\p{Cc}]*$/u;

export const ThreadIdSchema = v.pipe(
  v.string(),
  v.regex(THREAD_ID_PATTERN, "threadId must be 1-128 chars of [A-Za-z0-9._:-], starting alphanumeric"),
);

export const ArtifactIdSchema = v.pipe(v.string(), v.regex(UUID_PATTERN, "artifact id must be a UUID"));

export const ArtifactTypeSchema = v.pipe(
  v.string(),
  v.minBytes(1, "artifactType must not be empty"),
  v.maxBytes(128, "artifactType must be at most 128 UTF-8 bytes"),
  v.regex(NO_CONTROL_CHARACTERS, "artifactType must not contain control characters"),
);

export const IdentityKeySchema = v.pipe(
  v.string(),
  v.minBytes(1, "identityKey must not be empty"),
  v.maxBytes(256, "identityKey must be at most 256 UTF-8 bytes"),
  v.regex(NO_CONTROL_CHARACTERS, "identityKey must not contain control characters"),
);

/** Any JSON value; `JSON.parse` guarantees the shape, the byte bound is checked against the config. */
export const PayloadSchema = v.pipe(v.unknown(), v.description("any JSON value"));

export const CreateArtifactBodySchema = v.strictObject({
  artifactType: ArtifactTypeSchema,
  payload: PayloadSchema,
  identityKey: v.optional(IdentityKeySchema),
});

export const UpdateArtifactBodySchema = v.strictObject({
  payload: PayloadSchema,
});

export const ForkBodySchema = v.strictObject({
  threadId: ThreadIdSchema,
  atSeq: v.optional(v.pipe(v.number(), v.safeInteger("atSeq must be an integer"), v.minValue(1, "atSeq must be >= 1"))),
});

/**
 * An RFC 7396 merge patch of an artifact (`application/merge-patch+json`): it may touch
 * only `payload`, and may not remove it (a `null` payload would mean "delete the member").
 */
export const MergePatchBodySchema = v.strictObject({
  payload: v.pipe(
    PayloadSchema,
    v.check(
      (value) => value !== null,
      "payload cannot be removed (null); send a merge patch of it or remove the artifact",
    ),
  ),
});

const SeqString = v.pipe(
  v.string(),
  v.regex(/^(0|[1-9][0-9]{0,14})$/, "must be a non-negative integer"),
  v.transform(Number),
);

export const ReadThreadQuerySchema = v.pipe(
  v.object({
    consistency: v.optional(v.picklist(["strong", "cache"], "consistency must be strong or cache"), "strong"),
    minSeq: v.optional(SeqString),
    /** The thread as it was right after this seq (from the rollout; immutable). */
    atSeq: v.optional(SeqString),
  }),
  v.check((q) => q.atSeq === undefined || q.minSeq === undefined, "atSeq and minSeq cannot be combined"),
);

/** A page limit of 1-200 (default 50), as list-threads and versions take it. */
const PageLimit = v.optional(
  v.pipe(
    v.string(),
    v.regex(/^[0-9]{1,4}$/, "limit must be an integer from 1 to 200"),
    v.transform(Number),
    v.minValue(1, "limit must be an integer from 1 to 200"),
    v.maxValue(200, "limit must be an integer from 1 to 200"),
  ),
  "50",
);

export const VersionsQuerySchema = v.object({
  limit: PageLimit,
  cursor: v.optional(v.pipe(v.string(), v.maxLength(1024, "cursor is invalid"))),
});

export const ListThreadsQuerySchema = v.object({
  limit: PageLimit,
  cursor: v.optional(v.pipe(v.string(), v.maxLength(1024, "cursor is invalid"))),
});

const Timestamp = v.pipe(v.string(), v.isoTimestamp());

export const ArtifactSchema = v.strictObject({
  id: v.string(),
  threadId: v.string(),
  artifactType: v.string(),
  identityKey: v.nullable(v.string()),
  payload: PayloadSchema,
  version: v.pipe(v.number(), v.integer(), v.minValue(1)),
  createdAt: Timestamp,
  updatedAt: Timestamp,
  seq: v.pipe(v.number(), v.integer(), v.minValue(1)),
});

export const ThreadRefSchema = v.object({ id: v.string(), rolloutSeq: v.number() });

export const ThreadViewSchema = v.object({
  id: v.string(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
  rolloutSeq: v.number(),
  artifacts: v.array(ArtifactSchema),
  /** Only on a fork. */
  forkedFrom: v.optional(v.object({ threadId: v.string(), seq: v.number() })),
});

export const WriteResponseSchema = v.object({ artifact: ArtifactSchema, thread: ThreadRefSchema });
export const DeleteThreadResponseSchema = v.object({ deleted: v.object({ threadId: v.string(), seq: v.number() }) });
export const RemoveResponseSchema = v.object({
  removed: v.object({ id: v.string(), seq: v.number() }),
  thread: ThreadRefSchema,
});
export const ReadThreadResponseSchema = v.object({ thread: ThreadViewSchema });
export const VersionsResponseSchema = v.object({
  versions: v.array(
    v.object({
      version: v.number(),
      seq: v.number(),
      op: v.picklist(["add", "update", "remove"]),
      at: Timestamp,
      artifact: ArtifactSchema,
    }),
  ),
  nextCursor: v.nullable(v.string()),
});
export const GetArtifactResponseSchema = v.object({ artifact: ArtifactSchema });
export const ListThreadsResponseSchema = v.object({
  threads: v.array(ThreadViewSchema),
  nextCursor: v.nullable(v.string()),
});
export const HealthSchema = v.object({
  ok: v.boolean(),
  cache: v.picklist(["up", "down"]),
  rollout: v.picklist(["up", "down"]),
});
/** `/readyz`: ready for traffic (the rollout store answers within 2 s, no shutdown started); the cache may be down. */
export const ReadinessSchema = v.object({
  ready: v.boolean(),
  /** A shutdown has started (the stores were not asked then). */
  draining: v.boolean(),
  cache: v.optional(v.picklist(["up", "down"])),
  rollout: v.optional(v.picklist(["up", "down"])),
});
export const LivenessSchema = v.object({ live: v.literal(true) });
export const ProblemSchema = v.object({
  type: v.string(),
  title: v.string(),
  status: v.number(),
  code: v.string(),
  detail: v.string(),
  /** The request's id, as in its `X-Request-Id` response header: quote it when reporting a problem. */
  requestId: v.string(),
});

export type CreateArtifactBody = v.InferOutput<typeof CreateArtifactBodySchema>;
export type UpdateArtifactBody = v.InferOutput<typeof UpdateArtifactBodySchema>;

// ---------- webhooks (API.md "Webhooks") ----------

/** A path's webhook id. The routes answer a malformed one `404 webhook_not_found`, as any id the tenant does not hold. */
export const WebhookIdSchema = v.pipe(
  v.string(),
  v.regex(WEBHOOK_ID_PATTERN, "webhook id must be wh_ and 32 hex digits"),
);

/** The URL's shape only; webhooks/url-policy.ts decides whether it may be called (scheme, host, addresses). */
export const WebhookUrlSchema = v.pipe(
  v.string(),
  v.maxLength(2048, "url must be at most 2048 characters"),
  v.url("url must be an absolute URL"),
);

const isUnique = <T>(items: T[]) => new Set(items).size === items.length;

/** The threads a webhook follows: 1-100 distinct threadIds (absent or, on PATCH, null: every thread). */
export const WebhookThreadsSchema = v.pipe(
  v.array(ThreadIdSchema),
  v.minLength(1, "threads must name at least one thread (leave it out for every thread)"),
  v.maxLength(100, "threads may name at most 100 threads"),
  v.check(isUnique, "threads must not name a thread twice"),
);

export const WebhookEventsSchema = v.pipe(
  v.array(v.picklist(WEBHOOK_EVENTS, `events must be of ${WEBHOOK_EVENTS.join(", ")}`)),
  v.minLength(1, "events must name at least one event"),
  v.check(isUnique, "events must not name an event twice"),
);

export const WebhookDescriptionSchema = v.pipe(
  v.string(),
  v.maxBytes(512, "description must be at most 512 UTF-8 bytes"),
);

/** `POST /v1/webhooks`: `threads` absent = every thread, `events` absent = both. */
export const CreateWebhookBodySchema = v.strictObject({
  url: WebhookUrlSchema,
  threads: v.optional(WebhookThreadsSchema),
  events: v.optional(WebhookEventsSchema),
  description: v.optional(WebhookDescriptionSchema),
});

/** `PATCH /v1/webhooks/{id}`: any of these, at least one; `threads: null` follows every thread again. */
export const UpdateWebhookBodySchema = v.pipe(
  v.strictObject({
    url: v.optional(WebhookUrlSchema),
    threads: v.optional(v.nullable(WebhookThreadsSchema)),
    events: v.optional(WebhookEventsSchema),
    description: v.optional(WebhookDescriptionSchema),
    status: v.optional(v.picklist(["active", "paused"], "status must be active or paused")),
  }),
  v.check(
    (body) => Object.keys(body).length > 0,
    "the body must set at least one of url, threads, events, description, status",
  ),
);

/** `POST /v1/webhooks/{id}/replay`: deliver `threadId`'s events after `since` again. */
export const ReplayBodySchema = v.strictObject({
  threadId: ThreadIdSchema,
  since: v.pipe(
    v.number("since must be an integer >= 0"),
    v.safeInteger("since must be an integer >= 0"),
    v.minValue(0, "since must be an integer >= 0"),
  ),
});

export const ListWebhooksQuerySchema = v.object({
  limit: PageLimit,
  cursor: v.optional(v.pipe(v.string(), v.maxLength(1024, "cursor is invalid"))),
});

export const DeliveriesQuerySchema = v.object({
  limit: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^[0-9]{1,4}$/, "limit must be an integer from 1 to 100"),
      v.transform(Number),
      v.minValue(1, "limit must be an integer from 1 to 100"),
      v.maxValue(100, "limit must be an integer from 1 to 100"),
    ),
    "20",
  ),
});

/** A subscription as the API shows it: never its secret (only on create and rotate). */
export const WebhookSchema = v.object({
  id: v.string(),
  url: v.string(),
  /** null: every thread of the tenant. */
  threads: v.nullable(v.array(v.string())),
  events: v.array(v.picklist(WEBHOOK_EVENTS)),
  description: v.string(),
  status: v.picklist(["active", "paused", "failing"]),
  /** Why it is not active (a receiver's 410, retries exhausted). */
  statusReason: v.optional(v.string()),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});

export const WebhookWithSecretSchema = v.object({
  ...WebhookSchema.entries,
  /** `whsec_<base64>` (Standard Webhooks): shown on create and rotate only. */
  secret: v.string(),
});

export const WebhookResponseSchema = v.object({ webhook: WebhookSchema });
export const WebhookSecretResponseSchema = v.object({ webhook: WebhookWithSecretSchema });
export const ListWebhooksResponseSchema = v.object({
  webhooks: v.array(WebhookSchema),
  nextCursor: v.nullable(v.string()),
});
export const DeliveriesResponseSchema = v.object({
  deliveries: v.array(
    v.object({
      messageId: v.string(),
      threadId: v.string(),
      seq: v.number(),
      attempt: v.number(),
      outcome: v.picklist(["delivered", "failed", "gone"]),
      responseStatus: v.optional(v.number()),
      error: v.optional(v.string()),
      at: Timestamp,
      nextAttemptAt: v.optional(Timestamp),
    }),
  ),
});
export const ReplayResponseSchema = v.object({
  replay: v.object({ webhookId: v.string(), threadId: v.string(), since: v.number() }),
});

export type CreateWebhookBody = v.InferOutput<typeof CreateWebhookBodySchema>;
export type UpdateWebhookBody = v.InferOutput<typeof UpdateWebhookBodySchema>;
export type ReplayBody = v.InferOutput<typeof ReplayBodySchema>;
