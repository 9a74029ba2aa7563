import { createClient } from "@libsql/client";
import { FsBlobStore } from "../blob/fs.ts";
import { MemoryBlobStore } from "../blob/memory.ts";
import type { BlobStore } from "../blob/port.ts";
import type { EdgeFunction } from "../http/app.ts";
import { BroadcastChannelNotifier, InProcessNotifier } from "../live/notifier.ts";
import { assertAuthPolicy, type Config, type Env, loadConfig } from "./config.ts";
import { s3FromConfig } from "./s3-from-config.ts";
import { wire } from "./wire.ts";

interface DenoLike {
  env: { toObject(): Record<string, string> };
  mkdirSync(path: string, options: { recursive: boolean }): void;
}

const deno = (globalThis as unknown as { Deno: DenoLike }).Deno;

/**
 * Deno wiring: one service per isolate (Deno has no per-request I/O rule), config from
 * Deno.env with the same contract and defaults as Node, hints over BroadcastChannel
 * (delivered between isolates of a Deno Deploy deployment).
 */
export function createDenoFetch(only?: EdgeFunction): (request: Request) => Promise<Response> {
  const env = deno.env.toObject();
  const config = loadConfig(env);
  // Deno cannot tell a function where it listens: without auth, HOST must say loopback.
  assertAuthPolicy(config, env.HOST?.trim() || undefined);
  const { app } = wire({
    config,
    blobStore: blobStoreFor(config, env),
    connectLibsql: () => {
      if (config.libsqlUrl.startsWith("file:")) deno.mkdirSync(dirOf(config.libsqlUrl.slice(5)), { recursive: true });
      return createClient({
        url: config.libsqlUrl,
        ...(config.libsqlAuthToken ? { authToken: config.libsqlAuthToken } : {}),
        timeout: 5000,
        ...(config.libsqlUrl.startsWith("file:") ? { concurrency: 1 } : {}),
      });
    },
    notifier: typeof BroadcastChannel === "function" ? new BroadcastChannelNotifier() : new InProcessNotifier(),
    ...(only ? { only } : {}),
  });
  return async (request) => app.fetch(request);
}

function blobStoreFor(config: Config, env: Env): BlobStore {
  switch (config.blobStore.kind) {
    case "fs":
      return new FsBlobStore(config.blobStore.dir);
    case "memory":
      return new MemoryBlobStore();
    case "s3":
      return s3FromConfig(config.blobStore, env);
  }
}

function dirOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash > 0 ? path.slice(0, slash) : ".";
}
