import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { afterEach } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import type { BlobStore } from "../../src/blob/port.ts";
import { loadConfig } from "../../src/runtime/config.ts";
import { wire } from "../../src/runtime/wire.ts";
import type { TenantAdmission } from "../../src/limits/port.ts";
import type { Metrics } from "../../src/model/metrics.ts";
import type { Resolver } from "../../src/webhooks/url-policy.ts";
import { readJsonResult } from "./http.ts";

export interface InProcessOptions {
  env?: Record<string, string>;
  /** Default: a fresh FsBlobStore in the temp folder. */
  blobStore?: BlobStore | "memory";
  /** Default: a real libSQL file in the temp folder. */
  libsqlUrl?: string;
  /** The data folder (kept on close: its owner removes it); default: a fresh temp folder, removed on close. */
  dir?: string;
  /** Who keeps the tenants' limits (default: the process's, from the env, as the Node runtime wires it). */
  admission?: TenantAdmission | null;
  /** Where requests, streams and refusals are reported (default: nowhere). */
  metrics?: Metrics;
  /**
   * How webhook URL hosts resolve (default: no name resolves, so tests never ask real DNS;
   * literal addresses need none).
   */
  resolve?: Resolver;
}

/** The in-process default: every name is unknown. */
const noDns: Resolver = async (hostname) => {
  throw new Error(`no DNS in tests (${hostname})`);
};

/**
 * The app wired as the Node runtime wires it (real libSQL file, real fs rollout),
 * in this process, served through `app.request`.
 */
export function createTestApp(options: InProcessOptions = {}) {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "artifacts-test-"));
  const config = loadConfig({
    DATA_DIR: dir,
    ...(options.libsqlUrl ? { LIBSQL_URL: options.libsqlUrl } : {}),
    ...options.env,
  });
  const blobStore = options.blobStore === "memory"
    ? new MemoryBlobStore()
    : (options.blobStore ?? new FsBlobStore(join(dir, "rollouts")));
  const wired = wire({
    config,
    blobStore,
    connectLibsql: () => createClient({ url: config.libsqlUrl, timeout: 5000, concurrency: 1 }),
    ...(options.admission !== undefined ? { admission: options.admission } : {}),
    ...(options.metrics ? { metrics: options.metrics } : {}),
    webhooks: { resolve: options.resolve ?? noDns },
  });
  const request = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const init: RequestInit = { method, headers: { ...headers } };
    if (body !== undefined) {
      init.body = typeof body === "string" ? body : JSON.stringify(body);
      (init.headers as Record<string, string>)["content-type"] ??= "application/json";
    }
    const response = await wired.app.request(path, init);
    return readJsonResult(response);
  };
  /** Waits for work still running after its answer (compaction), then frees the cache and the folder. */
  const close = async () => {
    await wired.service.idle();
    wired.cache.close();
    if (!options.dir) rmSync(dir, { recursive: true, force: true });
  };
  return { ...wired, dir, config, blobStore, request, close };
}

/**
 * In-process apps that are closed after each test of the calling describe: `app(options)`
 * builds one (the memory rollout unless `options` say otherwise).
 */
export function useTestApps(): (options?: InProcessOptions) => ReturnType<typeof createTestApp> {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });
  return (options = {}) => {
    const created = createTestApp({ blobStore: "memory", ...options });
    cleanups.push(() => created.close());
    return created;
  };
}
