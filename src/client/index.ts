import type { Artifact, ThreadRef, ThreadView } from "../model/artifact.ts";
import type { ArtifactEvent, ThreadDeletedEvent } from "../model/patch.ts";
import type { JsonValue } from "../model/json.ts";
import type { WebhookEventName, WebhookStatus, WebhookView } from "../model/webhook.ts";
import type { DeliveryRecord } from "../webhooks/port.ts";
import { type SseMessage, SseParser } from "./sse-parser.ts";

export type {
  Artifact,
  ArtifactEvent,
  DeliveryRecord,
  JsonValue,
  ThreadDeletedEvent,
  ThreadRef,
  ThreadView,
  WebhookEventName,
  WebhookStatus,
  WebhookView,
};

/** A webhook as create and rotate-secret answer it: with its `whsec_` secret (shown only then). */
export type WebhookWithSecret = WebhookView & { secret: string };

export interface CreateWebhookInput {
  /** `https://` (http:// to loopback hosts only where the server allows it). */
  url: string;
  /** Absent: every thread of the tenant. */
  threads?: string[];
  /** Absent: both. */
  events?: WebhookEventName[];
  description?: string;
}

export interface UpdateWebhookInput {
  url?: string;
  /** null: every thread again. */
  threads?: string[] | null;
  events?: WebhookEventName[];
  description?: string;
  /** `active` resumes a paused or failing webhook where its delivery stopped. */
  status?: "active" | "paused";
}

export interface ClientOptions {
  /** Where the API is, e.g. `https://artifacts.example.com` (no trailing `/v1`). */
  baseUrl: string;
  /** Bearer token sent as `Authorization` on every request, the event stream included. */
  token?: string;
  fetch?: typeof fetch;
}

/** An RFC 9457 problem the API answered with. */
export class ArtifactsApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: string;

  constructor(status: number, code: string, detail: string) {
    super(`${status} ${code}: ${detail}`);
    this.name = "ArtifactsApiError";
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

export interface WriteResponse {
  artifact: Artifact;
  thread: ThreadRef;
}

export interface SubscribeOptions {
  /** Resume after this seq (default 0: everything). */
  since?: number;
  onEvent: (event: ArtifactEvent) => void;
  /**
   * The thread was deleted (at `seq`): everything before it is gone. The subscription
   * goes on after it, with the thread's next life.
   */
  onDeleted?: (event: ThreadDeletedEvent) => void;
  /** Called for each failed connection attempt before the client retries. */
  onError?: (error: unknown) => void;
  /** Abort to stop; the returned promise then resolves. */
  signal?: AbortSignal;
  /** Reconnect backoff bounds (ms); the server's `retry:` sets the floor. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/** A typed client for the thread-artifacts API; works in browsers, Node, Deno and Workers. */
export function createArtifactsClient(options: ClientOptions) {
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const auth: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};

  async function call<T>(
    method: string,
    path: string,
    init: { body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<T> {
    const headers: Record<string, string> = { ...auth, ...init.headers };
    if (init.body !== undefined) headers["content-type"] ??= "application/json";
    const response = await doFetch(`${baseUrl}${path}`, {
      method,
      headers,
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    });
    if (!response.ok) throw await toError(response);
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  const threadPath = (threadId: string) => `/v1/threads/${encodeURIComponent(threadId)}`;
  const webhookPath = (id: string) => `/v1/webhooks/${encodeURIComponent(id)}`;
  const ifMatch = (
    version?: number,
  ): Record<string, string> => (version === undefined ? {} : { "if-match": `"${version}"` });

  return {
    createArtifact(
      threadId: string,
      input: { artifactType: string; payload: JsonValue; identityKey?: string },
    ): Promise<WriteResponse> {
      return call("POST", `${threadPath(threadId)}/artifacts`, { body: input });
    },

    async readThread(
      threadId: string,
      query: { consistency?: "strong" | "cache"; minSeq?: number } = {},
    ): Promise<ThreadView> {
      const params = new URLSearchParams();
      if (query.consistency) params.set("consistency", query.consistency);
      if (query.minSeq !== undefined) params.set("minSeq", String(query.minSeq));
      const qs = params.size > 0 ? `?${params}` : "";
      return (await call<{ thread: ThreadView }>("GET", `${threadPath(threadId)}${qs}`)).thread;
    },

    async getArtifact(threadId: string, artifactId: string): Promise<Artifact> {
      return (await call<{ artifact: Artifact }>(
        "GET",
        `${threadPath(threadId)}/artifacts/${encodeURIComponent(artifactId)}`,
      )).artifact;
    },

    updateArtifact(
      threadId: string,
      artifactId: string,
      payload: JsonValue,
      options: { ifVersion?: number } = {},
    ): Promise<WriteResponse> {
      return call("PATCH", `${threadPath(threadId)}/artifacts/${encodeURIComponent(artifactId)}`, {
        body: { payload },
        headers: ifMatch(options.ifVersion),
      });
    },

    /**
     * Applies an RFC 7396 merge patch to the payload (`application/merge-patch+json`):
     * members of `patch` replace or recurse, `null` removes one. Decided on the payload
     * the artifact has when the server takes the write, so concurrent merges of different
     * members all apply.
     */
    mergeArtifact(
      threadId: string,
      artifactId: string,
      patch: JsonValue,
      options: { ifVersion?: number } = {},
    ): Promise<WriteResponse> {
      return call("PATCH", `${threadPath(threadId)}/artifacts/${encodeURIComponent(artifactId)}`, {
        body: { payload: patch },
        headers: { ...ifMatch(options.ifVersion), "content-type": "application/merge-patch+json" },
      });
    },

    removeArtifact(
      threadId: string,
      artifactId: string,
      options: { ifVersion?: number } = {},
    ): Promise<{ removed: { id: string; seq: number }; thread: ThreadRef }> {
      return call("DELETE", `${threadPath(threadId)}/artifacts/${encodeURIComponent(artifactId)}`, {
        headers: ifMatch(options.ifVersion),
      });
    },

    listThreads(
      query: { limit?: number; cursor?: string } = {},
    ): Promise<{ threads: ThreadView[]; nextCursor: string | null }> {
      const params = new URLSearchParams();
      if (query.limit !== undefined) params.set("limit", String(query.limit));
      if (query.cursor !== undefined) params.set("cursor", query.cursor);
      return call("GET", `/v1/threads${params.size > 0 ? `?${params}` : ""}`);
    },

    /**
     * Webhook subscriptions (API.md "Webhooks"): the tenant's backends get each event as a
     * signed `POST` (Standard Webhooks) without holding a stream open. The secret comes
     * back from `create` and `rotateSecret` only: keep it then.
     */
    webhooks: {
      async create(input: CreateWebhookInput): Promise<WebhookWithSecret> {
        return (await call<{ webhook: WebhookWithSecret }>("POST", "/v1/webhooks", { body: input })).webhook;
      },

      list(
        query: { limit?: number; cursor?: string } = {},
      ): Promise<{ webhooks: WebhookView[]; nextCursor: string | null }> {
        const params = new URLSearchParams();
        if (query.limit !== undefined) params.set("limit", String(query.limit));
        if (query.cursor !== undefined) params.set("cursor", query.cursor);
        return call("GET", `/v1/webhooks${params.size > 0 ? `?${params}` : ""}`);
      },

      async get(id: string): Promise<WebhookView> {
        return (await call<{ webhook: WebhookView }>("GET", webhookPath(id))).webhook;
      },

      async update(id: string, changes: UpdateWebhookInput): Promise<WebhookView> {
        return (await call<{ webhook: WebhookView }>("PATCH", webhookPath(id), { body: changes })).webhook;
      },

      /** Deletes the subscription; nothing more is delivered to it. */
      async remove(id: string): Promise<void> {
        await call<void>("DELETE", webhookPath(id));
      },

      /** A new secret signs every attempt from now on (the old one no longer does). */
      async rotateSecret(id: string): Promise<WebhookWithSecret> {
        return (await call<{ webhook: WebhookWithSecret }>("POST", `${webhookPath(id)}/rotate-secret`)).webhook;
      },

      /** Its recent delivery attempts, newest first. */
      async deliveries(id: string, query: { limit?: number } = {}): Promise<DeliveryRecord[]> {
        const qs = query.limit === undefined ? "" : `?limit=${query.limit}`;
        return (await call<{ deliveries: DeliveryRecord[] }>("GET", `${webhookPath(id)}/deliveries${qs}`)).deliveries;
      },

      /** Delivers `threadId`'s events after `since` again (accepted: `202`; delivery goes on from there). */
      async replay(id: string, input: { threadId: string; since: number }): Promise<void> {
        await call("POST", `${webhookPath(id)}/replay`, { body: input });
      },
    },

    /**
     * Follows the thread's `artifact-updated` stream over fetch (so the Authorization
     * header goes along), reconnecting with backoff and resuming after the last seq
     * seen: each event reaches `onEvent` once, in order. Resolves when `signal` aborts;
     * rejects on a 4xx other than 408/429 (retrying cannot fix it).
     */
    subscribe(threadId: string, subscription: SubscribeOptions): Promise<void> {
      let lastSeq = subscription.since ?? 0;
      return follow(`${threadPath(threadId)}/events`, () => String(lastSeq), subscription, (message) => {
        const event = JSON.parse(message.data) as ArtifactEvent | ThreadDeletedEvent;
        // Never deliver a seq twice, even if a proxy replays part of a stream.
        if (event.seq <= lastSeq) return false;
        lastSeq = event.seq;
        deliverEvent(message.event, event, subscription);
        return true;
      });
    },

    /**
     * Follows up to 100 threads on one connection (`GET /v1/events`): a page that watches
     * a thread list needs one of the browser's six HTTP/1.1 connections, not one per
     * thread. Each thread's events reach `onEvent` once, in its seq order; a reconnect
     * resumes every thread with the server's resume token. Threads are ids, or
     * `{ threadId, since }` to start one after a seq.
     */
    subscribeMany(
      threads: ReadonlyArray<string | { threadId: string; since?: number }>,
      subscription: Omit<SubscribeOptions, "since">,
    ): Promise<void> {
      const lastSeq = new Map(
        threads.map((t) => (typeof t === "string" ? [t, 0] : [t.threadId, t.since ?? 0] as [string, number])),
      );
      // Ids ending in ":<digits>" take an explicit ":0" so the server does not read a seq into them.
      const list = [...lastSeq].map(([id, since]) => (since > 0 || /:\d+$/.test(id) ? `${id}:${since}` : id));
      const path = `/v1/events?threads=${list.map(encodeURIComponent).join(",")}`;
      let token = "";
      return follow(path, () => token, subscription, (message) => {
        const event = JSON.parse(message.data) as ArtifactEvent | ThreadDeletedEvent;
        if (message.id) token = message.id;
        const seen = lastSeq.get(event.threadId);
        if (seen === undefined || event.seq <= seen) return false;
        lastSeq.set(event.threadId, event.seq);
        deliverEvent(message.event, event, subscription);
        return true;
      });
    },
  };

  /**
   * One SSE subscription, kept up: connect with `lastEventId()` as Last-Event-ID, hand
   * every `artifact-updated` message to `deliver` (true: it was new), and on an end or
   * a failure reconnect after the server's `retry:` with jittered exponential backoff.
   */
  async function follow(
    path: string,
    lastEventId: () => string,
    subscription: Omit<SubscribeOptions, "since" | "onEvent">,
    deliver: (message: SseMessage) => boolean,
  ): Promise<void> {
    const { signal } = subscription;
    const minBackoff = subscription.minBackoffMs ?? 250;
    const maxBackoff = subscription.maxBackoffMs ?? 10_000;
    let serverRetry = minBackoff;
    let failures = 0;
    while (!signal?.aborted) {
      try {
        const resumeFrom = lastEventId();
        const response = await doFetch(`${baseUrl}${path}`, {
          headers: { ...auth, accept: "text/event-stream", ...(resumeFrom ? { "last-event-id": resumeFrom } : {}) },
          ...(signal ? { signal } : {}),
        });
        if (!response.ok || !response.body) {
          const error = await toError(response);
          if (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429) {
            throw error;
          }
          throw new RetryableError(error);
        }
        let delivered = false;
        const parser = new SseParser(
          (message) => {
            if (message.event !== "artifact-updated" && message.event !== "thread-deleted") return;
            if (deliver(message)) {
              delivered = true;
              failures = 0;
            }
          },
          (ms) => {
            serverRetry = Math.max(minBackoff, ms);
          },
        );
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          parser.push(value);
        }
        // The server ends streams after their lifetime: resume at once if this one
        // was useful, otherwise back off so a server that closes at once is not hammered.
        if (delivered) continue;
      } catch (error) {
        if (signal?.aborted) return;
        if (error instanceof ArtifactsApiError) throw error;
        subscription.onError?.(error instanceof RetryableError ? error.cause : error);
      }
      failures++;
      const ceiling = Math.min(maxBackoff, serverRetry * 2 ** Math.min(failures - 1, 10));
      await delay(serverRetry + Math.random() * (ceiling - serverRetry), signal);
    }
  }
}

export type ArtifactsClient = ReturnType<typeof createArtifactsClient>;

function deliverEvent(
  name: string,
  event: ArtifactEvent | ThreadDeletedEvent,
  subscription: Pick<SubscribeOptions, "onEvent" | "onDeleted">,
): void {
  if (name === "thread-deleted") subscription.onDeleted?.(event as ThreadDeletedEvent);
  else subscription.onEvent(event as ArtifactEvent);
}

class RetryableError extends Error {
  constructor(cause: unknown) {
    super("retryable stream failure", { cause });
  }
}

async function toError(response: Response): Promise<ArtifactsApiError> {
  let code = "http_error";
  let detail = response.statusText;
  try {
    const body = (await response.json()) as { code?: unknown; detail?: unknown };
    if (typeof body.code === "string") code = body.code;
    if (typeof body.detail === "string") detail = body.detail;
  } catch {
    // not a problem+json body
  }
  return new ArtifactsApiError(response.status, code, detail);
}

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
