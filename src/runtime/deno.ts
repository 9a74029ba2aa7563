import { AsyncLocalStorage } from "node:async_hooks";
import type { EdgeFunction } from "../http/app.ts";
import { authConfigured } from "../http/auth/authenticator.ts";
import { withMetricsEndpoint } from "../http/metrics-endpoint.ts";
import { BroadcastChannelNotifier, InProcessNotifier } from "../live/notifier.ts";
import { configureLogging } from "../logging/configure.ts";
import { LIFECYCLE, logger } from "../logging/logger.ts";
import { assertAuthPolicy, type Config, isLoopbackHost, loadConfig } from "./config.ts";
import { denoResolve } from "./deno-resolver.ts";
import { PrometheusMetrics } from "./prometheus.ts";
import { blobStoreFor, libsqlConnector } from "./server-stores.ts";
import { serverWebhooks } from "./server-webhooks.ts";
import { WritesFirst } from "../webhooks/writes-first.ts";
import { wire } from "./wire.ts";

interface DenoLike {
  env: { toObject(): Record<string, string> };
  addSignalListener?(signal: "SIGTERM" | "SIGINT", handler: () => void): void;
  unrefTimer?(id: number): void;
  stdout?: { isTerminal?(): boolean };
}

const deno = (globalThis as unknown as { Deno: DenoLike }).Deno;

let loggingConfigured = false;

/**
 * Set by `deno task serve` (a long-lived process): webhooks are delivered here. Deno
 * Deploy functions keep the subscriptions and deliver none: an isolate that lives for its
 * requests can hold neither a lease nor a retry timer.
 */
let deliverWebhooks = false;

export function deliverWebhooksInThisProcess(): void {
  deliverWebhooks = true;
}

/**
 * LogTape for this Deno process, once (the first of `deno task serve` and the functions
 * to ask): JSON lines on stdout unless it is a terminal (or as LOG_FORMAT says), request
 * fields through node:async_hooks' AsyncLocalStorage, which Deno has.
 */
export function configureDenoLogging(config: Pick<Config, "logLevel" | "logFormat">): void {
  if (loggingConfigured) return;
  loggingConfigured = true;
  configureLogging({
    level: config.logLevel,
    format: config.logFormat ?? (deno.stdout?.isTerminal?.() ? "pretty" : "json"),
    write: (line) => console.log(line),
    contextLocalStorage: new AsyncLocalStorage(),
  });
}

/** Says once why the functions serve nothing (LOG_LEVEL itself may be what is wrong: with the defaults then). */
export function logConfigError(error: Error): void {
  configureDenoLogging({ logLevel: "info", logFormat: undefined });
  logger("server").error("configuration error: {reason}", { reason: error.message });
}

/**
 * Deno wiring: one service per isolate (Deno has no per-request I/O rule), config from
 * Deno.env with the same contract and defaults as Node, hints over BroadcastChannel
 * (delivered between isolates of a Deno Deploy deployment).
 */
export function createDenoFetch(only?: EdgeFunction): (request: Request) => Promise<Response> {
  const env = deno.env.toObject();
  const config = loadConfig(env);
  configureDenoLogging(config);
  // Deno cannot tell a function where it listens: without auth, HOST must say loopback.
  assertAuthPolicy(config, env.HOST?.trim() || undefined);
  // Prometheus at GET /metrics, as on Node. Spans go to Deno's own provider under OTEL_DENO=true.
  const metrics = config.metricsEnabled ? new PrometheusMetrics({ runtimeMetrics: true }) : null;
  const unref = (timer: ReturnType<typeof setTimeout>) => deno.unrefTimer?.(timer as unknown as number);
  const notifier = typeof BroadcastChannel === "function" ? new BroadcastChannelNotifier() : new InProcessNotifier();
  // Deliveries yield to requests while the server is busy (webhooks/writes-first.ts).
  const writesFirst = deliverWebhooks ? new WritesFirst({ unref }) : null;
  const webhooks = writesFirst
    ? serverWebhooks({
      ...(metrics ? { metrics } : {}),
      unref,
      tuning: { holder: `deno:${crypto.randomUUID().slice(0, 8)}`, gate: writesFirst },
    })
    : null;
  const { app, feeds } = wire({
    config,
    ...(metrics ? { metrics } : {}),
    blobStore: blobStoreFor(config, env),
    connectLibsql: libsqlConnector(config),
    notifier: webhooks ? webhooks.notifier(notifier) : notifier,
    unref,
    webhooks: { resolve: denoResolve, ...(webhooks ? { deliveries: webhooks.deliveries } : {}) },
    ...(only ? { only } : {}),
  });
  webhooks?.start();
  // On shutdown, end open event streams so the server's graceful close need not wait out
  // their lifetime (Deno Deploy has no signals: there the platform ends them); from then
  // on /readyz answers 503.
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    try {
      deno.addSignalListener?.(signal, () => {
        logger(LIFECYCLE).info("{signal}: shutting down; draining", { signal });
        feeds.drain();
        void webhooks?.stop();
      });
    } catch {
      // Signals not supported here.
    }
  }
  const fetch = metrics
    ? withMetricsEndpoint(app.fetch, {
      token: config.metricsToken,
      // Open only where the function may run without authentication: HOST says loopback.
      openWithoutToken: !authConfigured(config.auth) && isLoopbackHost(env.HOST?.trim() ?? ""),
      render: () => metrics.render(),
    })
    : app.fetch;
  return writesFirst
    ? (request) => writesFirst.track(() => Promise.resolve(fetch(request)))
    : async (request) => fetch(request);
}
