import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import { assertAuthPolicy, ConfigError, loadConfig } from "./config.ts";
import { trackConnections } from "./node-close.ts";
import { blobStoreFor, libsqlConnector } from "./server-stores.ts";
import { wire } from "./wire.ts";
import { describeError } from "../model/errors.ts";
import { rebuildCache } from "../service/rebuild.ts";

export function startNodeServer(env: NodeJS.ProcessEnv = process.env) {
  const config = loadConfig(env);
  assertAuthPolicy(config, config.host);
  const { app, cache, feeds, service, rollout } = wire({
    config,
    blobStore: blobStoreFor(config, env),
    connectLibsql: libsqlConnector(config),
    unref: (timer) => (timer as NodeJS.Timeout).unref(),
    // A cache of another schema version was replaced: fill it again from the rollout
    // (reads and writes repair their own threads meanwhile; the list fills as it goes).
    onCacheReset: () => void rebuildInBackground(),
  });
  const rebuildInBackground = async () => {
    console.log("the libSQL cache was of another schema version and was replaced; rebuilding it from the rollout");
    try {
      const summary = await rebuildCache({ service, rollout, cache });
      console.log(`cache rebuilt: ${summary.threads} threads, ${summary.failed.length} failed`);
    } catch (error) {
      console.error("cache rebuild failed; run npm run rebuild", describeError(error));
    }
  };
  const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, (info) => {
    console.log(`thread-artifacts listening on http://${config.host}:${info.port} (data: ${resolve(config.dataDir)})`);
  });
  const connections = trackConnections(server as Server);
  const shutdown = () => {
    // Open event streams end now (clients resume on the next process), so closing waits
    // only for the requests in flight; no new request is served on an open connection.
    feeds.drain();
    void connections.close().then(async () => {
      // Compaction started by the last writes finishes (it is only a shortcut for cold
      // reads, but one left half done would be redone by the next writer).
      await service.idle();
      cache.close();
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
    startNodeServer();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`configuration error: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
}
