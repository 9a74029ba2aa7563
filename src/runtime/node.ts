import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { serve } from "@hono/node-server";
import { assertAuthPolicy, ConfigError, loadConfig } from "./config.ts";
import { blobStoreFor, libsqlConnector } from "./server-stores.ts";
import { wire } from "./wire.ts";

export function startNodeServer(env: NodeJS.ProcessEnv = process.env) {
  const config = loadConfig(env);
  assertAuthPolicy(config, config.host);
  const { app, cache, hub } = wire({
    config,
    blobStore: blobStoreFor(config, env),
    connectLibsql: libsqlConnector(config),
  });
  const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, (info) => {
    console.log(`thread-artifacts listening on http://${config.host}:${info.port} (data: ${resolve(config.dataDir)})`);
  });
  const shutdown = () => {
    // Open event streams end now (clients resume elsewhere), so closing waits only for requests.
    hub.drain();
    server.close(() => {
      cache.close();
      process.exit(0);
    });
    // close() only drops connections idle at the moment it is called; the streams just
    // ended leave theirs idle a moment later, so keep dropping idle ones until the end.
    const serverWithConnections = server as { closeIdleConnections?: () => void };
    setInterval(() => serverWithConnections.closeIdleConnections?.(), 50).unref();
    // Open streams must not hold the process forever.
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
