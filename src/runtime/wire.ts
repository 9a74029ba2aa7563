import type { FaultBurst } from "../logging/faults.ts";
import { instrumentBlobStore } from "../blob/instrumented.ts";
import type { BlobStore } from "../blob/port.ts";
import { instrumentCache } from "../cache/instrumented.ts";
import { LibsqlCache, type SqlClient } from "../cache/libsql.ts";
import { createApp, type EdgeFunction } from "../http/app.ts";
import { type Authenticator, authenticatorFor } from "../http/auth/authenticator.ts";
import { FeedHub, type FeedSource } from "../live/feed.ts";
import { InProcessNotifier, type Notifier } from "../live/notifier.ts";
import { type Metrics, noMetrics } from "../model/metrics.ts";
import { InProcessAdmission, limitsFrom } from "../limits/in-process.ts";
import type { TenantAdmission } from "../limits/port.ts";
import { Rollout } from "../rollout/rollout.ts";
import { ArtifactService, type WriteMode } from "../service/artifact-service.ts";
import { KeyedAnswers } from "../webhooks/keyed-answers.ts";
import { NoDeliveries } from "../webhooks/no-deliveries.ts";
import type { WebhookDeliveries, WebhookRegistry } from "../webhooks/port.ts";
import { BlobWebhookRegistry } from "../webhooks/registry.ts";
import { checkWebhookUrl, type Resolver, type UrlCheck } from "../webhooks/url-policy.ts";
import type { Config } from "./config.ts";

export type { WriteMode };

/** What the service is built from, on every runtime. */
export interface ServiceWiring {
  config: Config;
  blobStore: BlobStore;
  /** Opens the libSQL client (each runtime brings its own: native file client or the web client). */
  connectLibsql: () => SqlClient;
  /** Who sequences the writes (default: this service's own writer, deciding on the cache). */
  writeMode?: WriteMode;
  /** Wake-up hints from writers to streams; in-process unless the runtime has better. */
  notifier?: Notifier;
  /** See LibsqlCacheOptions.schema. */
  cacheSchema?: { ready: boolean };
  /** See LibsqlCacheOptions.onReset: the cache was of another schema version and is empty now. */
  onCacheReset?: () => void;
  /** See ServiceOptions.repairBehindEveryMs: on for long-lived processes (the default), off on Workers. */
  repairBehindEveryMs?: number;
  /** See ServiceOptions.background (Workers: the request's waitUntil). */
  background?: (work: Promise<void>) => void;
  /** See ServiceOptions.unref (Node and Deno each have their own). */
  unref?: (timer: ReturnType<typeof setTimeout>) => void;
  /** Where requests, commits, store calls, streams and the cache's state are reported (default: nowhere). */
  metrics?: Metrics;
  /**
   * The stores' fault logs (once per burst), when they must outlive this wiring: Workers
   * wire per request, so they keep one per isolate. Default: this wiring's own.
   */
  storeFaults?: { blob: FaultBurst; libsql: FaultBurst };
}

/** What the HTTP app adds. */
export interface AppWiring extends ServiceWiring {
  /** Serve one edge function's route only. */
  only?: EdgeFunction;
  /** Who checks credentials, when the runtime keeps one across wirings (Workers wire per request); default: one made from the config. */
  authenticator?: Authenticator | null;
  /** See AppOptions.onePerRequest (Workers wire per request). */
  onePerRequest?: boolean;
  /** Where streams get their feed (default: one FeedHub for the process, hinted by the notifier). */
  feeds?: (reader: ArtifactService) => FeedSource;
  /**
   * Who keeps the tenants' buckets and stream counts (default: this process, see
   * `processAdmission`); null: no limits at all.
   */
  admission?: TenantAdmission | null;
  /** API.md "Webhooks" (Node, Deno); absent: no webhook routes (Workers, for now). */
  webhooks?: WebhookWiring;
}

/** The runtime's part of webhooks: its DNS, and who delivers. */
export interface WebhookWiring {
  /** The URL policy's resolver; null where the runtime has no DNS API (literal addresses only). */
  resolve: Resolver | null;
  /** Who delivers (default: `NoDeliveries`, nobody yet). */
  deliveries?: (context: DeliveriesContext) => WebhookDeliveries;
}

/** What a runtime's deliveries are built from. */
export interface DeliveriesContext {
  registry: WebhookRegistry;
  /** The service and its stores (`blobStore`: the instrumented rollout store, shared by every process). */
  stores: ReturnType<typeof wireService>;
  config: Config;
  /** The routes' URL policy (the same resolver and WEBHOOK_ALLOW_HTTP_LOOPBACK), to ask again before each attempt. */
  checkUrl: (url: string) => Promise<UrlCheck>;
}

/** The service over its stores (the Workers sequencer needs nothing more). */
export function wireService(wiring: ServiceWiring) {
  const { config, notifier = new InProcessNotifier(), repairBehindEveryMs = 1000, metrics = noMetrics } = wiring;
  // Both stores measured (and traced) at their ports, whatever the adapter.
  const cache = instrumentCache(
    new LibsqlCache({
      connect: wiring.connectLibsql,
      local: config.libsqlUrl.startsWith("file:"),
      ...(wiring.cacheSchema ? { schema: wiring.cacheSchema } : {}),
      onReset: () => wiring.onCacheReset?.(),
      // Node and Deno: applies answered in one turn share a transaction (see LibsqlCache).
      ...(typeof globalThis.setImmediate === "function" ? { batchApplies: (flush) => setImmediate(flush) } : {}),
    }),
    metrics,
  );
  // Measured, traced and its faults logged once per burst, in one wrapper (blob/instrumented.ts).
  const blobStore = instrumentBlobStore(wiring.blobStore, metrics, wiring.storeFaults?.blob);
  const rollout = new Rollout(blobStore);
  const service = new ArtifactService({
    rollout,
    cache,
    limits: limitsOf(config),
    compaction: { everyPatches: config.compactEvery },
    deleteRetentionMs: config.deleteRetentionMs,
    onCommit: (tenant, commit) => notifier.notify(tenant, commit.threadId, commit.lastSeq),
    repairBehindEveryMs,
    ...(wiring.writeMode ? { writeMode: wiring.writeMode } : {}),
    ...(wiring.background ? { background: wiring.background } : {}),
    ...(wiring.unref ? { unref: wiring.unref } : {}),
    ...(wiring.storeFaults ? { cacheFaults: wiring.storeFaults.libsql } : {}),
    metrics,
  });
  return { service, cache, rollout, notifier, blobStore };
}

/** The service and the Hono app over it, the same way on every runtime. */
export function wire(wiring: AppWiring) {
  const stores = wireService(wiring);
  const { service, notifier } = stores;
  const { config } = wiring;
  // Streams share one feed per thread in the process, unless the runtime feeds them itself.
  const feeds = wiring.feeds
    ? wiring.feeds(service)
    : new FeedHub({ reader: service, notifier, pollMs: config.ssePollMs });
  const webhooks = wiring.webhooks ? wireWebhooks(wiring.webhooks, stores, config) : undefined;
  const app = createApp({
    service,
    limits: limitsOf(config),
    cursorSecret: config.cursorSecret,
    authenticator: wiring.authenticator !== undefined ? wiring.authenticator : authenticatorFor(config.auth),
    corsOrigins: config.corsOrigins,
    ...(wiring.only ? { only: wiring.only } : {}),
    ...(wiring.onePerRequest ? { onePerRequest: true } : {}),
    ...(wiring.metrics ? { metrics: wiring.metrics } : {}),
    admission: wiring.admission === undefined ? processAdmission(config) : wiring.admission,
    ...(webhooks
      ? {
        webhooks: {
          ...webhooks,
          resolve: wiring.webhooks?.resolve ?? null,
          allowHttpLoopback: config.webhookAllowHttpLoopback,
          maxPerTenant: config.maxWebhooksPerTenant,
        },
      }
      : {}),
    live: {
      feeds,
      maxStreamThreads: config.maxStreamThreads,
      options: {
        retryMs: 2000,
        pingMs: config.ssePingMs,
        maxLifetimeMs: config.sseMaxLifetimeMs,
        stallMs: config.sseStallMs,
      },
    },
  });
  return { ...stores, app, feeds, webhooks };
}

/**
 * The registry over the same instrumented blob store the rollout writes (subscriptions are
 * durable like artifacts, and measured like every rollout call), and who delivers.
 */
function wireWebhooks(wiring: WebhookWiring, stores: ReturnType<typeof wireService>, config: Config) {
  const registry = new BlobWebhookRegistry(stores.blobStore);
  const policy = { allowHttpLoopback: config.webhookAllowHttpLoopback, resolve: wiring.resolve };
  const checkUrl = (url: string) => checkWebhookUrl(url, policy);
  const deliveries = wiring.deliveries
    ? wiring.deliveries({ registry, stores, config, checkUrl })
    : new NoDeliveries(registry);
  return { registry, deliveries, answers: new KeyedAnswers(stores.blobStore) };
}

/**
 * The tenants' limits kept in this process (Node, Deno: N processes admit up to N times
 * a limit), or null when nothing is limited. A lease lapses a minute after the longest
 * a stream lives, should its end never be seen.
 */
export function processAdmission(config: Config): TenantAdmission | null {
  const { defaults, overrides } = config.rateLimits;
  const limited = (limits: typeof defaults) =>
    limits.writes !== null || limits.reads !== null || limits.streams !== null;
  if (!limited(defaults) && ![...overrides.values()].some(limited)) return null;
  return new InProcessAdmission({
    limitsOf: limitsFrom(defaults, overrides),
    leaseMs: config.sseMaxLifetimeMs + 60_000,
  });
}

function limitsOf(config: Config) {
  return { maxPayloadBytes: config.maxPayloadBytes, maxArtifactsPerThread: config.maxArtifactsPerThread };
}
