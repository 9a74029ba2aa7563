import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { serve } from "@hono/node-server";
import { createClient } from "@libsql/client";
import { FsBlobStore } from "../blob/fs.ts";
import { MemoryBlobStore } from "../blob/memory.ts";
import type { BlobStore } from "../blob/port.ts";
import { assertAuthPolicy, type Config, ConfigError, type Env, loadConfig } from "./config.ts";
import { s3FromConfig } from "./s3-from-config.ts";
import { wire } from "./wire.ts";

function blobStoreFor(config: Config, env: Env): BlobStore {
  switch (config.blobStore.kind) {
    case "fs":
      return new FsBlobStore(resolve(config.blobStore.dir));
    case "memory":
      return new MemoryBlobStore();
    case "s3":
      return s3FromConfig(config.blobStore, env);
  }
}

/** Creates the folder a `file:` libSQL URL points into; other URLs are left alone. */
function prepareLibsqlUrl(url: string): string {
  if (!url.startsWith("file:")) return url;
  const path = url.slice("file:".length);
  mkdirSync(dirname(resolve(path)), { recursive: true });
  return url;
}

export function startNodeServer(env: NodeJS.ProcessEnv = process.env) {
  const config = loadConfig(env);
  assertAuthPolicy(config, config.host);
  const libsqlUrl = prepareLibsqlUrl(config.libsqlUrl);
  const { app, cache } = wire({
    config,
    blobStore: blobStoreFor(config, env),
    connectLibsql: () =>
      createClient({
        url: libsqlUrl,
        ...(config.libsqlAuthToken ? { authToken: config.libsqlAuthToken } : {}),
        // Several processes may share one file: wait for the write lock instead of failing.
        timeout: 5000,
        // One connection, so the per-connection PRAGMAs set at first use hold for every call.
        ...(libsqlUrl.startsWith("file:") ? { concurrency: 1 } : {}),
      }),
  });
  const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, (info) => {
    console.log(`thread-artifacts listening on http://${config.host}:${info.port} (data: ${resolve(config.dataDir)})`);
  });
  const shutdown = () => {
    server.close(() => {
      cache.close();
      process.exit(0);
    });
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
