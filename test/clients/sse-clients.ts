/**
 * The SSE clients people actually use, each behind one small shape so the compatibility
 * suite runs the same scenarios on all of them:
 * - `eventsource`: the W3C EventSource for Node (headers only through its `fetch` option);
 * - `@microsoft/fetch-event-source`: fetch-based, configured as its README says a
 *   client should be (fatal 4xx in `onopen`, retry after `onclose`), plus the "plain"
 *   use with no handlers but `onmessage` that the restart reproduction was made with;
 * - the service's own typed client (`subscribe`).
 * Chromium's own EventSource runs the same scenarios in test/browser/.
 */
import { fetchEventSource } from "@microsoft/fetch-event-source";
import { EventSource } from "eventsource";
import { createArtifactsClient } from "../../src/client/index.ts";
import type { ArtifactEvent } from "../../src/model/patch.ts";

export interface Received {
  /** The SSE id the client reported for the event. */
  id: string;
  event: ArtifactEvent;
}

export interface Subscription {
  readonly received: Received[];
  /** Set when the client gave up (with the HTTP status when it knows one). */
  readonly failure: { status: number | undefined } | undefined;
  /** Requests the client made for this subscription (its reconnects included). */
  readonly requests: number;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Sent as `Authorization: Bearer …` (clients that can send headers). */
  token?: string;
  /** Sent as `?access_token=…` (clients that cannot). */
  queryToken?: string;
  /** Where to resume: the `Last-Event-ID` a client restored from storage. */
  lastEventId?: string;
  /** The fetch underneath (default: the global one). */
  fetch?: typeof fetch;
}

export interface SseClient {
  name: string;
  canSendHeaders: boolean;
  /** Whether a first request can carry a restored Last-Event-ID (the W3C API cannot). */
  canResumeFromStoredId: boolean;
  open(url: string, options: OpenOptions): Subscription;
}

function withQueryToken(url: string, token: string | undefined): string {
  if (token === undefined) return url;
  const u = new URL(url);
  u.searchParams.set("access_token", token);
  return u.toString();
}

/** A fetch that counts its calls and adds `headers` the caller did not set. */
function countingFetch(headers: Record<string, string>, base: typeof fetch = fetch) {
  const counter = { requests: 0 };
  const doFetch: typeof fetch = (input, init) => {
    counter.requests++;
    const merged = new Headers(init?.headers);
    for (const [name, value] of Object.entries(headers)) if (!merged.has(name)) merged.set(name, value);
    return base(input, { ...init, headers: merged });
  };
  return { counter, doFetch };
}

const eventsourceClient: SseClient = {
  name: "eventsource (W3C EventSource for Node)",
  canSendHeaders: true,
  canResumeFromStoredId: false,
  open(url, options) {
    const received: Received[] = [];
    let failure: Subscription["failure"];
    const { counter, doFetch } = countingFetch(
      options.token ? { authorization: `Bearer ${options.token}` } : {},
      options.fetch,
    );
    const source = new EventSource(withQueryToken(url, options.queryToken), { fetch: doFetch });
    source.addEventListener("artifact-updated", (message) => {
      received.push({ id: message.lastEventId, event: JSON.parse(message.data) as ArtifactEvent });
    });
    source.addEventListener("error", (error) => {
      // CLOSED after an error: the client gave up (a non-200 answer); otherwise it reconnects.
      if (source.readyState === source.CLOSED) failure = { status: (error as { code?: number }).code };
    });
    return {
      received,
      get failure() {
        return failure;
      },
      get requests() {
        return counter.requests;
      },
      close: async () => source.close(),
    };
  },
};

class FatalError extends Error {
  constructor(readonly status: number) {
    super(`fatal ${status}`);
  }
}
class RetriableError extends Error {}

/** fetch-event-source reads `window` and `document`; Node has neither. */
function ensureBrowserGlobals(): void {
  const g = globalThis as Record<string, unknown>;
  g.window ??= globalThis;
  g.document ??= { hidden: false, addEventListener() {}, removeEventListener() {} };
}

function fetchEventSourceClient(style: "documented" | "plain"): SseClient {
  return {
    name: style === "documented"
      ? "@microsoft/fetch-event-source (as its README configures it)"
      : "@microsoft/fetch-event-source (plain: onmessage only)",
    canSendHeaders: true,
    canResumeFromStoredId: true,
    open(url, options) {
      ensureBrowserGlobals();
      const received: Received[] = [];
      let failure: Subscription["failure"];
      const controller = new AbortController();
      const { counter, doFetch } = countingFetch({}, options.fetch);
      const headers: Record<string, string> = {};
      if (options.token) headers.authorization = `Bearer ${options.token}`;
      if (options.lastEventId !== undefined) headers["last-event-id"] = options.lastEventId;
      const handlers = style === "documented"
        ? {
          async onopen(response: Response) {
            if (response.ok && response.headers.get("content-type")?.startsWith("text/event-stream")) return;
            if (response.status >= 400 && response.status < 500 && response.status !== 429) {
              throw new FatalError(
                response.status,
              );
            }
            throw new RetriableError();
          },
          onclose() {
            // The server ended the stream (its lifetime, a restart): reconnect.
            throw new RetriableError();
          },
          onerror(error: unknown) {
            if (error instanceof FatalError) throw error;
            return 200;
          },
        }
        : {};
      const done = fetchEventSource(withQueryToken(url, options.queryToken), {
        headers,
        openWhenHidden: true,
        signal: controller.signal,
        fetch: doFetch,
        onmessage(message) {
          if (message.event === "artifact-updated") {
            received.push({ id: message.id, event: JSON.parse(message.data) as ArtifactEvent });
          }
        },
        ...handlers,
      }).catch((error: unknown) => {
        failure = { status: error instanceof FatalError ? error.status : undefined };
      });
      return {
        received,
        get failure() {
          return failure;
        },
        get requests() {
          return counter.requests;
        },
        close: async () => {
          controller.abort();
          await done;
        },
      };
    },
  };
}

const typedClient: SseClient = {
  name: "the typed client (subscribe)",
  canSendHeaders: true,
  canResumeFromStoredId: true,
  open(url, options) {
    const received: Received[] = [];
    let failure: Subscription["failure"];
    const { counter, doFetch } = countingFetch({}, options.fetch);
    const parsed = new URL(url);
    const threadId = decodeURIComponent(parsed.pathname.split("/")[3] ?? "");
    const controller = new AbortController();
    const api = createArtifactsClient({
      baseUrl: parsed.origin,
      fetch: doFetch,
      ...(options.token ? { token: options.token } : {}),
    });
    const done = api
      .subscribe(threadId, {
        since: options.lastEventId === undefined ? 0 : Number(options.lastEventId),
        onEvent: (event) => received.push({ id: String(event.seq), event }),
        signal: controller.signal,
        minBackoffMs: 50,
        maxBackoffMs: 200,
      })
      .catch((error: unknown) => {
        failure = { status: (error as { status?: number }).status };
      });
    return {
      received,
      get failure() {
        return failure;
      },
      get requests() {
        return counter.requests;
      },
      close: async () => {
        controller.abort();
        await done;
      },
    };
  },
};

export const SSE_CLIENTS: readonly SseClient[] = [eventsourceClient, fetchEventSourceClient("documented"), typedClient];
export const PLAIN_FETCH_EVENT_SOURCE = fetchEventSourceClient("plain");
