import type { Artifact, ThreadRef, ThreadView } from "../model/artifact.ts";
import type { ArtifactEvent, ThreadDeletedEvent } from "../model/patch.ts";
import type { JsonValue } from "../model/json.ts";
import type { WebhookEventName, WebhookStatus, WebhookView } from "../model/webhook.ts";
import type { DeliveryRecord } from "../webhooks/port.ts";
import { ArtifactsApiError, toError } from "./errors.ts";
import { type SseMessage, SseParser } from "./sse-parser.ts";
import {
  type RemoveResponse,
  type ThreadsStore,
  type ThreadStore,
  type WatchOptions,
  watchThread,
  watchThreads,
} from "./thread-store.ts";

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
export { ArtifactsApiError };
export type {
  LiveArtifact,
  LiveThread,
  PendingCreate,
  RemoveResponse,
  StoreStatus,
  ThreadSnapshot,
  ThreadsSnapshot,
  ThreadsStore,
  ThreadStore,
  WatchOptions,
  WriteFailure,
} from "./thread-store.ts";

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

export interface WriteResponse {
  artifact: Artifact;
  thread: ThreadRef;
}

/**
 * Options every write takes. `idempotencyKey` is sent as `Idempotency-Key` (1–255
 * printable ASCII characters): the server answers a repeat of the same write (same
 * route and body) with the first one's answer and writes nothing, so a write whose answer
 * was lost can be sent again safely, with the same key. A fresh key per logical write.
 */
export interface WriteOptions {
  idempotencyKey?: string;
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
  /** Called for each failed connection attempt (or connection lost) before the client retries. */
  onError?: (error: unknown) => void;
  /** Called each time a connection is accepted (`2xx`), before its events: the stream is up. */
  onOpen?: () => void;
  /** Abort to stop; the returned promise then resolves. */
  signal?: AbortSignal;
  /** Reconnect backoff bounds (ms); the server's `retry:` raises the floor, up to `maxBackoffMs`. */
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
  const idempotency = (options: WriteOptions): Record<string, string> =>
    options.idempotencyKey === undefined ? {} : { "idempotency-key": options.idempotencyKey };

  const client = {
    createArtifact(
      threadId: string,
      input: { artifactType: string; payload: JsonValue; identityKey?: string },
      options: WriteOptions = {},
    ): Promise<WriteResponse> {
      return call("POST", `${threadPath(threadId)}/artifacts`, { body: input, headers: idempotency(options) });
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
      options: { ifVersion?: number } & WriteOptions = {},
    ): Promise<WriteResponse> {
      return call("PATCH", `${threadPath(threadId)}/artifacts/${encodeURIComponent(artifactId)}`, {
        body: { payload },
        headers: { ...ifMatch(options.ifVersion), ...idempotency(options) },
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
      options: { ifVersion?: number } & WriteOptions = {},
    ): Promise<WriteResponse> {
      return call("PATCH", `${threadPath(threadId)}/artifacts/${encodeURIComponent(artifactId)}`, {
        body: { payload: patch },
        headers: {
          ...ifMatch(options.ifVersion),
          ...idempotency(options),
          "content-type": "application/merge-patch+json",
        },
      });
    },

    removeArtifact(
      threadId: string,
      artifactId: string,
      options: { ifVersion?: number } & WriteOptions = {},
    ): Promise<RemoveResponse> {
      return call("DELETE", `${threadPath(threadId)}/artifacts/${encodeURIComponent(artifactId)}`, {
        headers: { ...ifMatch(options.ifVersion), ...idempotency(options) },
      });
    },

    /**
     * Ends the thread's life (API.md "Thread history, forks and deletion"): its artifacts
     * are gone, open streams get `thread-deleted`, and a later create starts a new life.
     * `ifSeq` sends `If-Match: "<rolloutSeq>"` (412 if the thread moved on).
     */
    async deleteThread(
      threadId: string,
      options: { ifSeq?: number } & WriteOptions = {},
    ): Promise<{ threadId: string; seq: number }> {
      return (await call<{ deleted: { threadId: string; seq: number } }>("DELETE", threadPath(threadId), {
        headers: { ...ifMatch(options.ifSeq), ...idempotency(options) },
      })).deleted;
    },

    /** A new thread `target.threadId` with the source's artifacts at `target.atSeq` (default: its head). */
    async forkThread(
      threadId: string,
      target: { threadId: string; atSeq?: number },
      options: WriteOptions = {},
    ): Promise<ThreadView> {
      return (await call<{ thread: ThreadView }>("POST", `${threadPath(threadId)}/fork`, {
        body: target,
        headers: idempotency(options),
      })).thread;
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

  return Object.assign(client, {
    /**
     * A live, optimistic store of one thread for UIs (React's useSyncExternalStore):
     * `getSnapshot()`, `subscribe(listener)`, `close()`, and writes that show at once and
     * are confirmed or rolled back. See src/client/thread-store.ts.
     */
    watchThread(threadId: string, options?: WatchOptions): ThreadStore {
      return watchThread(client, threadId, options);
    },

    /** A live store of up to 100 threads over one `/v1/events` connection (read-only). */
    watchThreads(threadIds: readonly string[], options?: WatchOptions): ThreadsStore {
      return watchThreads(client, threadIds, options);
    },
  });

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
        subscription.onOpen?.();
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
            serverRetry = Math.min(maxBackoff, Math.max(minBackoff, ms));
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
