import type { Artifact, ThreadRef, ThreadView } from "../model/artifact.ts";
import type { ArtifactEvent } from "../model/patch.ts";
import type { JsonValue } from "../model/json.ts";
import { SseParser } from "./sse-parser.ts";

export type { Artifact, ArtifactEvent, JsonValue, ThreadRef, ThreadView };

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
    if (init.body !== undefined) headers["content-type"] = "application/json";
    const response = await doFetch(`${baseUrl}${path}`, {
      method,
      headers,
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    });
    if (!response.ok) throw await toError(response);
    return (await response.json()) as T;
  }

  const threadPath = (threadId: string) => `/v1/threads/${encodeURIComponent(threadId)}`;
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
     * Follows the thread's `artifact-updated` stream over fetch (so the Authorization
     * header goes along), reconnecting with backoff and resuming after the last seq
     * seen: each event reaches `onEvent` once, in order. Resolves when `signal` aborts;
     * rejects on a 4xx other than 408/429 (retrying cannot fix it).
     */
    async subscribe(threadId: string, subscription: SubscribeOptions): Promise<void> {
      const { signal } = subscription;
      const minBackoff = subscription.minBackoffMs ?? 250;
      const maxBackoff = subscription.maxBackoffMs ?? 10_000;
      let lastSeq = subscription.since ?? 0;
      let serverRetry = minBackoff;
      let failures = 0;
      while (!signal?.aborted) {
        try {
          const response = await doFetch(`${baseUrl}${threadPath(threadId)}/events`, {
            headers: { ...auth, accept: "text/event-stream", "last-event-id": String(lastSeq) },
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
              if (message.event !== "artifact-updated") return;
              const event = JSON.parse(message.data) as ArtifactEvent;
              // Never deliver a seq twice, even if a proxy replays part of a stream.
              if (event.seq <= lastSeq) return;
              lastSeq = event.seq;
              delivered = true;
              failures = 0;
              subscription.onEvent(event);
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
    },
  };
}

export type ArtifactsClient = ReturnType<typeof createArtifactsClient>;

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
