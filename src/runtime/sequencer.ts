/**
 * Workers: the thread's sequencer, a Durable Object per (tenant, thread), and the
 * Worker's side of it.
 *
 * The object is the thread's only long-lived, single-threaded place, which is what the
 * group-commit writer wants: Workers forward create/update/remove to it; it queues them,
 * decides each group on the thread state it holds in memory (no cache read before a
 * write), puts ONE commit per group, pushes the group's events to the thread's open
 * streams, applies it to libSQL in one batch and answers. It keeps nothing the rollout
 * cannot rebuild: after an eviction the next request loads the thread from the cache
 * (checked against the rollout) or the rollout, and put-if-absent still guards every
 * commit, so a Worker without the binding, a Deno function or a Node process writing the
 * same rollout stays correct (the object just catches up when it loses a race).
 *
 * Streams: each of the Worker's event streams holds a hibernatable WebSocket to the
 * object (`state.acceptWebSocket`), over which the object sends every committed group.
 * An idle object hibernates with its sockets open, so open streams neither keep it awake
 * (its wall-clock is billed) nor cost store requests.
 */
import { problemResponse } from "../http/problem.ts";
import { keptRequestId, REQUEST_ID_HEADER } from "../http/request-id.ts";
import { requestParentContext, withTraceHeaders } from "../http/trace-context.ts";
import type { PushMessage, PushSocket } from "../live/pushed-feeds.ts";
import type { WriteCommand } from "../model/decide.ts";
import { type ProblemCode, ProblemError } from "../model/errors.ts";
import { FaultBurst, isReported } from "../logging/faults.ts";
import { logger, withLogContext } from "../logging/logger.ts";
import { TENANT_PATTERN, THREAD_ID_PATTERN, threadKey } from "../model/ids.ts";
import type { ThreadJson } from "../model/artifact.ts";
import { type Commit, logEventOf } from "../model/patch.ts";
import { type Context, endSpan, SpanKind, tracer, withSpan } from "../model/tracing.ts";
import type { ArtifactService, HeadSource, WritePath, WriteResult } from "../service/artifact-service.ts";
import { AnalyticsEngineMetrics, isAnalyticsEngineDataset } from "./analytics-engine.ts";
import { loadWorkerContext, type WorkerEnv } from "./workers-context.ts";
import { InProcessNotifier } from "../live/notifier.ts";
import { type HintingNotifier, hintingNotifier, WebhookDelivererClient } from "./webhook-deliverer.ts";
import { wireService } from "./wire.ts";

/** The parts of the Durable Object state API the sequencer uses, structurally (no workers-types dependency). */
export interface DurableObjectStateLike {
  acceptWebSocket(socket: WebSocket, tags?: string[]): void;
  getWebSockets(tag?: string): WebSocket[];
  waitUntil(promise: Promise<unknown>): void;
}

export interface DurableObjectStubLike {
  fetch(input: string, init?: RequestInit): Promise<Response & { webSocket?: WebSocketLike | null }>;
}

export interface DurableObjectNamespaceLike {
  idFromName(name: string): unknown;
  get(id: unknown): DurableObjectStubLike;
}

/** A Workers WebSocket as the Worker's side holds it (accepted, then used like a browser's). */
interface WebSocketLike extends PushSocket {
  accept(): void;
}

declare const WebSocketPair: { new (): { 0: WebSocket; 1: WebSocket } };

const log = logger("sequencer");
/** The isolate's calls to sequencers that could not be made, logged once per burst. */
const unreachable = new FaultBurst({ store: "sequencer", log });

/** The Durable Object class bound as `SEQUENCER` (wrangler.toml). */
export class ThreadSequencer {
  readonly #state: DurableObjectStateLike;
  readonly #env: WorkerEnv;
  #service: ArtifactService | undefined;
  /** With the `WEBHOOKS` binding: hints the tenant's webhooks after each commit. */
  #hints: HintingNotifier | undefined;

  constructor(state: DurableObjectStateLike, env: WorkerEnv) {
    this.#state = state;
    this.#env = env;
  }

  /**
   * Each call runs in a server span, the child of the Worker's context the call carries
   * (`traceparent`, see SequencerClient), so the object's commit and store spans join the
   * request's trace wherever a tracer provider is registered.
   */
  async fetch(request: Request): Promise<Response> {
    const parent = requestParentContext(request.headers);
    // Named by the call (`sequencer /write`, `/head`, `/thread`, `/events`): the ids stay in the query.
    const span = tracer.startSpan(`sequencer ${new URL(request.url).pathname}`, { kind: SpanKind.SERVER }, parent);
    try {
      // The Worker's request id on every log line the call writes (a well-formed one only).
      const requestId = keptRequestId(request.headers.get(REQUEST_ID_HEADER));
      const serve = () => this.#serve(request);
      const response = await withSpan(span, () => (requestId ? withLogContext({ requestId }, serve) : serve()), parent);
      span.setAttribute("http.response.status_code", response.status);
      endSpan(span);
      return response;
    } catch (error) {
      endSpan(span, error);
      throw error;
    }
  }

  async #serve(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const tenant = url.searchParams.get("tenant") ?? "";
    const threadId = url.searchParams.get("thread") ?? "";
    // Only the Worker calls here, with ids it validated; refuse anything else all the same.
    if (!TENANT_PATTERN.test(tenant) || !THREAD_ID_PATTERN.test(threadId)) {
      return problemResponse(new ProblemError("invalid_request", "the sequencer needs a tenant and a thread"));
    }
    try {
      const service = this.#serviceFor();
      switch (url.pathname) {
        case "/write": {
          // The tenant's subscriptions, read while the write commits (its hint needs them after the answer).
          this.#hints?.warm(tenant);
          const command = (await request.json()) as WriteCommand;
          return Response.json(await service.write(tenant, threadId, command));
        }
        case "/head":
          return Response.json({ seq: await service.writerHead(tenant, threadId) });
        case "/thread":
          return Response.json({ thread: await service.writerThread(tenant, threadId) });
        case "/events": {
          if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
            return problemResponse(
              new ProblemError("invalid_request", "the event link is a WebSocket", { status: 426 }),
            );
          }
          const pair = new WebSocketPair();
          // Hibernatable: the object may sleep while the socket stays open.
          this.#state.acceptWebSocket(pair[1], [threadKey(tenant, threadId)]);
          // The greeting: the head once the socket is in (every commit after it is pushed
          // to it), so the stream reads no head of its own and knows what to catch up.
          this.#state.waitUntil(this.#greet(service, pair[1], tenant, threadId));
          return new Response(null, { status: 101, webSocket: pair[0] } as ResponseInit);
        }
        default:
          return problemResponse(
            new ProblemError("invalid_request", `no sequencer route ${url.pathname}`, { status: 404 }),
          );
      }
    } catch (error) {
      if (error instanceof ProblemError) return problemResponse(error);
      // A store fault was logged by the store, once per burst: not again per call.
      if (isReported(error)) log.debug("sequencer call failed on a store fault", { error });
      else log.error("sequencer failed", { error });
      return problemResponse(
        new ProblemError("unavailable", "a storage backend failed; retry", { retryAfterSeconds: 1 }),
      );
    }
  }

  /** Streams only listen; a message from one is ignored. */
  webSocketMessage(): void {}

  webSocketClose(socket: WebSocket, code: number, reason: string): void {
    try {
      socket.close(code, reason);
    } catch {
      // Already closed.
    }
  }

  webSocketError(): void {}

  /** Built on first use (after every eviction): the object's own service, writer resident. */
  #serviceFor(): ArtifactService {
    if (this.#service) return this.#service;
    const context = loadWorkerContext(this.#env);
    const webhooks = this.#env.WEBHOOKS as DurableObjectNamespaceLike | undefined;
    // After each commit (its cache apply, which follows the answer), the deliverers of the
    // tenant's webhooks that follow the thread are hinted (webhook-deliverer.ts).
    this.#hints = typeof webhooks?.idFromName === "function"
      ? hintingNotifier(new InProcessNotifier(), {
        blobStore: context.blobStore,
        deliverers: new WebhookDelivererClient(webhooks),
        background: (work) => this.#state.waitUntil(work),
      })
      : undefined;
    // The service alone: the object serves no HTTP routes, only its writer and heads.
    const { service } = wireService({
      ...context,
      // Long-lived, unlike a Worker's request: it repairs a cache it wrote past while
      // libSQL was down, once libSQL answers (a timer only while something is behind).
      repairBehindEveryMs: 1000,
      writeMode: { kind: "resident", onDurable: (tenant, commit) => this.#push(tenant, commit) },
      background: (work) => this.#state.waitUntil(work),
      ...(this.#hints ? { notifier: this.#hints } : {}),
      // Long-lived, so no per-recorder budget: past the platform's per-invocation limit a point is dropped.
      ...(isAnalyticsEngineDataset(this.#env.METRICS)
        ? { metrics: new AnalyticsEngineMetrics(this.#env.METRICS, Infinity) }
        : {}),
    });
    this.#service = service;
    return service;
  }

  /**
   * Sends a new link the thread's head (from memory, confirmed at most a second ago). A
   * head that cannot be had sends nothing: the stream then reads it from the store.
   */
  async #greet(service: ArtifactService, socket: WebSocket, tenant: string, threadId: string): Promise<void> {
    try {
      const head = await service.writerHead(tenant, threadId);
      socket.send(JSON.stringify({ head } satisfies PushMessage));
    } catch (error) {
      if (!isReported(error)) log.warn("the sequencer could not greet a stream with its head", { error });
    }
  }

  /** A durable commit's events to every stream of the thread (before the cache has them: the events carry everything). */
  #push(tenant: string, commit: Commit): void {
    const message = JSON.stringify({ events: commit.patches.map(logEventOf) } satisfies PushMessage);
    for (const socket of this.#state.getWebSockets(threadKey(tenant, commit.threadId))) {
      try {
        socket.send(message);
      } catch {
        // A socket closing under us: its stream reads the log after the reconnect.
      }
    }
  }
}

/**
 * The Worker's side: writes and heads go to the thread's sequencer, streams link to it.
 * A sequencer that cannot be reached answers 503 (the client retries), never a silent
 * write elsewhere: one writer per thread is what makes the head in memory right.
 */
export class SequencerClient implements WritePath, HeadSource {
  readonly #namespace: DurableObjectNamespaceLike;
  readonly #traceContext: Context | undefined;
  readonly #requestId: string | undefined;

  /**
   * `traceContext`: the trace context of the request this client serves, carried to the
   * object on every call (W3C `traceparent`) when no span is active: workerd registers no
   * context manager, so the caller's context is all there is to carry. Where a span is
   * active (a traced Worker, tests on Node) the calls carry that span instead.
   * `requestId`: the request's id (`X-Request-Id`), so the object's log lines carry it too.
   */
  constructor(namespace: DurableObjectNamespaceLike, options: { traceContext?: Context; requestId?: string } = {}) {
    this.#namespace = namespace;
    this.#traceContext = options.traceContext;
    this.#requestId = options.requestId;
  }

  async write(tenant: string, threadId: string, command: WriteCommand): Promise<WriteResult> {
    const response = await this.#call(tenant, threadId, "/write", { method: "POST", body: JSON.stringify(command) });
    return (await response.json()) as WriteResult;
  }

  async head(tenant: string, threadId: string): Promise<number> {
    const response = await this.#call(tenant, threadId, "/head", {});
    return ((await response.json()) as { seq: number }).seq;
  }

  async thread(tenant: string, threadId: string): Promise<ThreadJson | null> {
    const response = await this.#call(tenant, threadId, "/thread", {});
    return ((await response.json()) as { thread: ThreadJson | null }).thread;
  }

  /** Opens the thread's push link (a WebSocket to its sequencer). */
  async connect(tenant: string, threadId: string): Promise<PushSocket> {
    const response = await this.#stub(tenant, threadId).fetch(this.#url(tenant, threadId, "/events"), {
      headers: this.#headers({ upgrade: "websocket" }),
    });
    const socket = response.webSocket;
    if (response.status !== 101 || !socket) {
      await response.body?.cancel();
      throw new Error(`the sequencer refused the event link (${response.status})`);
    }
    socket.accept();
    return socket;
  }

  #stub(tenant: string, threadId: string): DurableObjectStubLike {
    return this.#namespace.get(this.#namespace.idFromName(threadKey(tenant, threadId)));
  }

  /** A call's headers: the trace context and the request id it serves. */
  #headers(headers: Record<string, string>): Record<string, string> {
    if (this.#requestId) headers[REQUEST_ID_HEADER] = this.#requestId;
    return withTraceHeaders(headers, this.#traceContext);
  }

  #url(tenant: string, threadId: string, path: string): string {
    return `https://sequencer${path}?tenant=${encodeURIComponent(tenant)}&thread=${encodeURIComponent(threadId)}`;
  }

  /** A call whose problem answers come back as the same ProblemError, and whose failures are 503s. */
  async #call(tenant: string, threadId: string, path: string, init: RequestInit): Promise<Response> {
    let response: Response;
    try {
      response = await this.#stub(tenant, threadId).fetch(this.#url(tenant, threadId, path), {
        ...init,
        headers: this.#headers({ ...(init.headers as Record<string, string> | undefined) }),
      });
      unreachable.succeeded();
    } catch (error) {
      unreachable.failed(path.slice(1), error);
      throw new ProblemError("unavailable", "the thread's sequencer is unreachable; retry", { retryAfterSeconds: 1 });
    }
    if (response.ok) return response;
    const problem = (await response.json().catch(() => null)) as { code?: string; detail?: string } | null;
    const retryAfter = Number(response.headers.get("retry-after"));
    throw new ProblemError(
      (problem?.code ?? "unavailable") as ProblemCode,
      problem?.detail ?? "the sequencer failed; retry",
      {
        status: response.status,
        ...(Number.isFinite(retryAfter) && retryAfter > 0 ? { retryAfterSeconds: retryAfter } : {}),
      },
    );
  }
}
