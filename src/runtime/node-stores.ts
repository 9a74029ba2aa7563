/**
 * The Node runtime's stores from the configuration: shared by the server
 * (`node.ts`) and the `rebuild` command (`rebuild.ts`), so both open exactly the
 * same rollout and the same libSQL database from the same environment.
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

/** Creates the folder a `file:` libSQL URL points into; other URLs are left alone. */
function prepareLibsqlUrl(url: string): string {
  if (!url.startsWith("file:")) return url;
  const path = url.slice("file:".length);
  mkdirSync(dirname(resolve(path)), { recursive: true });
  return url;
}

/** Opens a libSQL client for `config.libsqlUrl` (the native client: files, `libsql://`, `http(s)://`). */
export function libsqlConnector(config: Config): () => Client {
  const url = prepareLibsqlUrl(config.libsqlUrl);
  return () =>
    createClient({
      url,
      ...(config.libsqlAuthToken ? { authToken: config.libsqlAuthToken } : {}),
      // Several processes may share one file: wait for the write lock instead of failing.
      timeout: 5000,
      // One connection, so the per-connection PRAGMAs set at first use hold for every call.
      ...(url.startsWith("file:") ? { concurrency: 1 } : {}),
    });
}
