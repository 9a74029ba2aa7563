import type { EdgeFunction } from "../http/app.ts";
import { misconfiguredResponse } from "../http/problem.ts";
import { REQUEST_ID_HEADER, requestIdOf } from "../http/request-id.ts";
import { traceContextOf } from "../http/trace-context.ts";
import { PushedFeeds } from "../live/pushed-feeds.ts";
import { ConfigError } from "./config.ts";
import { AnalyticsEngineMetrics, isAnalyticsEngineDataset } from "./analytics-engine.ts";
import { type DurableObjectNamespaceLike, SequencerClient } from "./sequencer.ts";
import { configureWorkerLogging, loadWorkerContext, type WorkerContext, type WorkerEnv } from "./workers-context.ts";
import { blobFaults } from "../blob/instrumented.ts";
import { logger } from "../logging/logger.ts";
import type { ArtifactService } from "../service/artifact-service.ts";
import { cacheFaults } from "../service/cache-guard.ts";
import { InProcessNotifier } from "../live/notifier.ts";
import { hintingNotifier, WebhookDelivererClient, WorkerDeliveries } from "./webhook-deliverer.ts";
import { wire } from "./wire.ts";
import { workersAdmission } from "./workers-admission.ts";

export type { WorkerEnv };

export interface WaitUntil {
  waitUntil(promise: Promise<unknown>): void;
}

/** With the sequencer, a stream reads its log only on this slow safety poll (pushes carry the events). */
const SAFETY_POLL_MS = 60_000;

/** The stores' faults, once per burst for the isolate (not once per request, each wired anew). */
const storeFaults = { blob: blobFaults(), libsql: cacheFaults() };

/**
 * Serves one request on Workers. Everything is wired per request: Workers forbid one
 * request from touching I/O objects or settling promises of another, so no stream, lock
 * or feed may outlive its request. With the `SEQUENCER` binding, the thread's Durable
 * Object sequences its writes, knows its head and pushes its events to the streams;
 * without it, writers in different isolates coordinate through the rollout's
 * put-if-absent alone and streams poll. Per-tenant limits: see workers-admission.ts.
 * Webhooks: with the `WEBHOOKS` binding, the routes are served and each webhook's
 * `WebhookDeliverer` object delivers it (webhook-deliverer.ts); the sequencer hints it
 * after each commit (without the sequencer, this Worker does). Workers have no DNS API:
 * the URL policy checks literal addresses and names only (Cloudflare's fetch reaches no
 * private network).
 */
export async function workerFetch(
  request: Request,
  env: WorkerEnv,
  ctx: WaitUntil | undefined,
  only?: EdgeFunction,
): Promise<Response> {
  let context: WorkerContext;
  try {
    context = loadWorkerContext(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    // LOG_LEVEL itself may be what is wrong: with the defaults then.
    configureWorkerLogging({ logLevel: "info" });
    logger("server").error("configuration error: {reason}", { reason: error.message });
    return misconfiguredResponse(request);
  }
  // The request's id is decided here, before the app, so the calls to the thread's
  // sequencer carry the same one the app answers with (with the caller's trace context).
  const requestId = requestIdOf(request.headers.get(REQUEST_ID_HEADER));
  const sequencer = isNamespace(env.SEQUENCER)
    ? new SequencerClient(env.SEQUENCER, { traceContext: traceContextOf(request.headers), requestId })
    : undefined;
  const background = ctx ? (work: Promise<unknown>) => ctx.waitUntil(work) : undefined;
  const deliverers = isNamespace(env.WEBHOOKS) ? new WebhookDelivererClient(env.WEBHOOKS) : undefined;
  const { app } = wire({
    ...context,
    storeFaults,
    // Per-tenant limits: the tenant's TenantLimiter object, the Rate Limiting bindings, or this isolate.
    admission: workersAdmission(env, context.config, background),
    // The optional Analytics Engine binding `METRICS` gets the events /metrics has on Node and Deno.
    ...(isAnalyticsEngineDataset(env.METRICS) ? { metrics: new AnalyticsEngineMetrics(env.METRICS) } : {}),
    // Nothing outlives a request here: the next write or strong read repairs a cache left behind.
    repairBehindEveryMs: 0,
    // The app serves this request only: a router with nothing to build.
    onePerRequest: true,
    // Compaction runs after the answer; the request's waitUntil keeps the isolate for it.
    ...(background ? { background } : {}),
    ...(sequencer
      ? {
        writeMode: { kind: "forwarded", writes: sequencer, heads: sequencer } as const,
        feeds: (reader: ArtifactService) =>
          new PushedFeeds({
            reader,
            connect: (tenant, threadId) => sequencer.connect(tenant, threadId),
            safetyPollMs: SAFETY_POLL_MS,
          }),
      }
      : {}),
    ...(deliverers
      ? {
        webhooks: {
          resolve: null,
          deliveries: () => new WorkerDeliveries(deliverers, background),
        },
        // Writes that bypass the sequencer hint the deliverers from here, after the commit.
        ...(sequencer ? {} : {
          notifier: hintingNotifier(new InProcessNotifier(), {
            blobStore: context.blobStore,
            deliverers,
            background: background ?? ((work) => void work),
          }),
        }),
      }
      : {}),
    ...(only ? { only } : {}),
  });
  // The app answers with the id decided here (see http/request-id.ts).
  return app.fetch(request, { requestId });
}

function isNamespace(binding: unknown): binding is DurableObjectNamespaceLike {
  return typeof (binding as DurableObjectNamespaceLike | undefined)?.idFromName === "function";
}
