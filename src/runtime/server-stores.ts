/**
 * The stores of runtimes with a filesystem and the native libSQL client (Node and
 * Deno), from the configuration: shared by the Node server (`node.ts`), the `rebuild`
 * command (`rebuild.ts`) and the Deno functions (`deno.ts`), so all of them open
 * exactly the same rollout and the same libSQL database from the same environment.
 */
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { type Client, createClient } from "@libsql/client";
import { FsBlobStore } from "../blob/fs.ts";
import { MemoryBlobStore } from "../blob/memory.ts";
import type { BlobStore } from "../blob/port.ts";
import type { Config, Env } from "./config.ts";
import { s3FromConfig } from "./s3-from-config.ts";

export function blobStoreFor(config: Config, env: Env): BlobStore {
  switch (config.blobStore.kind) {
    case "fs":
      return new FsBlobStore(resolve(config.blobStore.dir));
    case "memory":
      return new MemoryBlobStore();
    case "s3":
      return s3FromConfig(config.blobStore, env);
  }
}

/**
 * Opens a libSQL client for `config.libsqlUrl` (the native client: files, `libsql://`,
 * `http(s)://`), making the folder a `file:` URL points into. Called on first use, so a
 * folder that cannot be made counts as the cache being down, not as a failed start.
 */
export function libsqlConnector(config: Config): () => Client {
  const url = config.libsqlUrl;
  return () => {
    if (url.startsWith("file:")) mkdirSync(dirname(resolve(url.slice("file:".length))), { recursive: true });
    return createClient({
      url,
      ...(config.libsqlAuthToken ? { authToken: config.libsqlAuthToken } : {}),
      // Several processes may share one file: wait for the write lock instead of failing.
      timeout: 5000,
      // One connection, so the per-connection PRAGMAs set at first use hold for every call.
      ...(url.startsWith("file:") ? { concurrency: 1 } : {}),
    });
  };
}
