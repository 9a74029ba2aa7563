import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import { assertAuthPolicy, ConfigError, loadConfig } from "./config.ts";
import { trackConnections } from "./node-close.ts";
import { blobStoreFor, libsqlConnector } from "./server-stores.ts";
import { wire } from "./wire.ts";

export function startNodeServer(env: NodeJS.ProcessEnv = process.env) {
  const config = loadConfig(env);
  assertAuthPolicy(config, config.host);
  const { app, cache, hub, service } = wire({
    config,
    blobStore: blobStoreFor(config, env),
    connectLibsql: libsqlConnector(config),
    unref: (timer) => (timer as NodeJS.Timeout).unref(),
  });
  const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, (info) => {
    console.log(`thread-artifacts listening on http://${config.host}:${info.port} (data: ${resolve(config.dataDir)})`);
  });
  const connections = trackConnections(server as Server);
  const shutdown = () => {
    // Open event streams end now (clients resume on the next process), so closing waits
    // only for the requests in flight; no new request is served on an open connection.
    hub.drain();
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
