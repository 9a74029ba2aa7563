import { AsyncLocalStorage } from "node:async_hooks";
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import { assertAuthPolicy, type Config, ConfigError, isLoopbackHost, loadConfig } from "./config.ts";
import { trackConnections } from "./node-close.ts";
import { type NodeTracing, startNodeTracing } from "./node-tracing.ts";
import { PrometheusMetrics } from "./prometheus.ts";
import { nodeResolve } from "./node-resolver.ts";
import { serverWebhooks } from "./server-webhooks.ts";
import { nodeDeliveryFetch } from "./node-delivery-fetch.ts";
import { WritesFirst } from "../webhooks/writes-first.ts";
import { InProcessNotifier } from "../live/notifier.ts";
import { blobStoreFor, libsqlConnector } from "./server-stores.ts";
import { wire } from "./wire.ts";
import { authConfigured } from "../http/auth/authenticator.ts";
import { withMetricsEndpoint } from "../http/metrics-endpoint.ts";
import { configureLogging } from "../logging/configure.ts";
import { lineBuffer } from "./line-buffer.ts";
import { LIFECYCLE, logger } from "../logging/logger.ts";
import { rebuildCache } from "../service/rebuild.ts";

const log = logger("server");
/** How often the cache file's WAL is checkpointed beside the event loop (wal-checkpointer.ts). */
const WAL_CHECKPOINT_EVERY_MS = 250;
/** Start and shutdown: logged whatever LOG_LEVEL says. */
const lifecycle = logger(LIFECYCLE);

/**
 * LogTape for this process: JSON lines on stdout unless it is a terminal (or as
 * LOG_FORMAT says), request fields through an AsyncLocalStorage.
 */
export function configureNodeLogging(config: Pick<Config, "logLevel" | "logFormat">): void {
  configureLogging({
    level: config.logLevel,
    format: config.logFormat ?? (process.stdout.isTTY ? "pretty" : "json"),
    write: bufferedStdout(),
    contextLocalStorage: new AsyncLocalStorage(),
  });
}

/** Log lines to stdout in one write per 10 ms or 16 KiB (line-buffer.ts); what is pending goes out as the process exits. */
function bufferedStdout(): (line: string) => void {
  const lines = lineBuffer({
    write: (chunk) => process.stdout.write(chunk),
    maxDelayMs: 10,
    maxBytes: 16 * 1024,
    later: (run, ms) => setTimeout(run, ms).unref(),
    cancel: (timer) => clearTimeout(timer),
  });
  process.on("exit", lines.flush);
  return lines.add;
}

/** `tracing`: what `startNodeTracing` registered, flushed before the process exits. */
export function startNodeServer(env: NodeJS.ProcessEnv = process.env, tracing: NodeTracing | null = null) {
  const config = loadConfig(env);
  configureNodeLogging(config);
  assertAuthPolicy(config, config.host);
  // Prometheus at GET /metrics, the process's own families (CPU, memory, event loop) included.
  const metrics = config.metricsEnabled ? new PrometheusMetrics({ runtimeMetrics: true }) : null;
  // Webhook delivery in this process: hinted by its commits, swept for the others', and
  // yielding to requests while the server is busy (webhooks/writes-first.ts).
  const unref = (timer: ReturnType<typeof setTimeout>) => (timer as NodeJS.Timeout).unref();
  const writesFirst = new WritesFirst({ unref });
  const webhooks = serverWebhooks({
    ...(metrics ? { metrics } : {}),
    unref,
    // The lease names its holder: this process, findable by its pid. Deliveries POST
    // through node:http(s), about a third of fetch's CPU (runtime/node-delivery-fetch.ts).
    tuning: {
      holder: `node:${process.pid}:${crypto.randomUUID().slice(0, 8)}`,
      gate: writesFirst,
      fetch: nodeDeliveryFetch,
    },
  });
  // The fs store's commits are put in place and synced on a thread of their own where the
  // process has a second CPU for it, as the cache's writes (below; docs/decisions.md).
  const blobStore = blobStoreFor(config, env, { commitsOnThread: () => availableParallelism() > 1 });
  const { app, cache, feeds, service, rollout } = wire({
    config,
    ...(metrics ? { metrics } : {}),
    blobStore,
    // A libSQL file's WAL checkpoints run on a worker thread, not on the event loop; so do
    // its writes where the process has a second CPU for it: on one, the hop and the thread
    // taking turns with the event loop cost more than the writes (docs/decisions.md "Cache").
    connectLibsql: libsqlConnector(config, {
      checkpointEveryMs: WAL_CHECKPOINT_EVERY_MS,
      writesOnWorker: () => availableParallelism() > 1,
    }),
    unref: (timer) => (timer as NodeJS.Timeout).unref(),
    notifier: webhooks.notifier(new InProcessNotifier()),
    // Webhook URLs are judged by the addresses getaddrinfo gives, as Node's fetch would connect.
    webhooks: { resolve: nodeResolve, deliveries: webhooks.deliveries },
    // A cache of another schema version was replaced: fill it again from the rollout
    // (reads and writes repair their own threads meanwhile; the list fills as it goes).
    onCacheReset: () => void rebuildInBackground(),
  });
  webhooks.start();
  const rebuildInBackground = async () => {
    log.info("the libSQL cache was of another schema version and was replaced; rebuilding it from the rollout");
    try {
      const summary = await rebuildCache({ service, rollout, cache });
      log.info("cache rebuilt: {threads} threads, {failed} failed", {
        threads: summary.threads,
        failed: summary.failed.length,
      });
    } catch (error) {
      log.error("cache rebuild failed; run npm run rebuild", { error });
    }
  };
  const served = metrics
    ? withMetricsEndpoint(app.fetch, {
      token: config.metricsToken,
      openWithoutToken: !authConfigured(config.auth) && isLoopbackHost(config.host),
      render: () => metrics.render(),
    })
    : app.fetch;
  const fetch = (request: Request) => writesFirst.track(() => Promise.resolve(served(request)));
  const server = serve({ fetch, port: config.port, hostname: config.host }, (info) => {
    // test/support/server-process.ts and bench/lib/process.ts wait for this line: keep "listening on http://…".
    lifecycle.info("thread-artifacts listening on {url} (data: {dataDir})", {
      url: `http://${config.host}:${info.port}`,
      dataDir: resolve(config.dataDir),
    });
  });
  const connections = trackConnections(server as Server);
  const shutdown = (signal: NodeJS.Signals) => {
    // From here /readyz answers 503 (the feeds are draining).
    lifecycle.info("{signal}: shutting down; draining", { signal });
    // Open event streams end now (clients resume on the next process), so closing waits
    // only for the requests in flight; no new request is served on an open connection.
    feeds.drain();
    // Attempts in flight are abandoned (redelivered by whoever takes the lease), cursors
    // written, leases handed back.
    const delivering = webhooks.stop();
    void connections.close().then(async () => {
      await delivering;
      // Compaction started by the last writes finishes (it is only a shortcut for cold
      // reads, but one left half done would be redone by the next writer).
      await service.idle();
      cache.close();
      // The commit journal's last checkpoint: the next process has nothing to replay.
      await (blobStore as { close?: () => Promise<void> }).close?.().catch(() => {});
      // The last spans (this shutdown's requests) go out before the process does (at most 2 s).
      await tracing?.shutdown();
      process.exit(0);
    });
    // A request that never finishes must not hold the process forever.
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
  return { server, config };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  try {
    startNodeServer(process.env, await startNodeTracing(process.env));
  } catch (error) {
    if (error instanceof ConfigError) {
      // LOG_LEVEL or LOG_FORMAT may be what is wrong: say it with the defaults.
      configureNodeLogging({ logLevel: "info", logFormat: undefined });
      log.error("configuration error: {reason}", { reason: error.message });
      process.exit(1);
    }
    throw error;
  }
}
