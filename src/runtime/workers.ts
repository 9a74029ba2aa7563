import { createClient } from "@libsql/client/web";
import { MemoryBlobStore } from "../blob/memory.ts";
import type { BlobStore } from "../blob/port.ts";
import { R2BlobStore, type R2BucketLike } from "../blob/r2.ts";
import type { EdgeFunction } from "../http/app.ts";
import { misconfiguredResponse } from "../http/problem.ts";
import { type DurableObjectNamespaceLike, DurableObjectNotifier, type WaitUntil } from "../live/thread-hub.ts";
import { InProcessNotifier } from "../live/notifier.ts";
import { assertAuthPolicy, type Config, ConfigError, type Env, loadConfig } from "./config.ts";
import { s3FromConfig } from "./s3-from-config.ts";
import { wire } from "./wire.ts";

/** The Worker's bindings: R2 `ROLLOUTS`, Durable Object `THREAD_HUB`, and string vars/secrets. */
export interface WorkerEnv {
  ROLLOUTS?: R2BucketLike;
  THREAD_HUB?: DurableObjectNamespaceLike;
  [name: string]: unknown;
}

/** Set once any request of this isolate has put the cache schema in place. */
const cacheSchema = { ready: false };
/** `BLOB_STORE=memory:` on Workers lives as long as the isolate: for demos only. */
let memoryStore: MemoryBlobStore | undefined;

/**
 * Serves one request on Workers. Everything is wired per request: Workers forbid one
 * request from touching I/O objects or settling promises of another, so no stream,
 * lock or feed may outlive its request. Cross-request coordination is the rollout's
 * put-if-absent (correctness) and ThreadHub (wake-up hints).
 */
export async function workerFetch(
  request: Request,
  env: WorkerEnv,
  ctx: WaitUntil | undefined,
  only?: EdgeFunction,
): Promise<Response> {
  let config: Config;
  let blobStore: BlobStore;
  const vars = stringVars(env);
  try {
    config = loadConfig(vars);
    // A Worker is never on loopback: it needs authentication configured.
    assertAuthPolicy(config, undefined);
    blobStore = workerBlobStore(env, vars, config);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`configuration error: ${error.message}`);
    return misconfiguredResponse();
  }
  const { app } = wire({
    config,
    blobStore,
    connectLibsql: () =>
      createClient({ url: config.libsqlUrl, ...(config.libsqlAuthToken ? { authToken: config.libsqlAuthToken } : {}) }),
    notifier: env.THREAD_HUB ? new DurableObjectNotifier(env.THREAD_HUB, ctx) : new InProcessNotifier(),
    cacheSchema,
    // Nothing outlives a request here: the next write or strong read repairs a cache left behind.
    healEveryMs: 0,
    // Compaction runs after the answer; the request's waitUntil keeps the isolate for it.
    ...(ctx ? { background: (work: Promise<void>) => ctx.waitUntil(work) } : {}),
    ...(only ? { only } : {}),
  });
  return app.fetch(request);
}

function workerBlobStore(env: WorkerEnv, vars: Env, config: Config): BlobStore {
  if (vars.BLOB_STORE) {
    if (config.blobStore.kind === "s3") return s3FromConfig(config.blobStore, vars);
    if (config.blobStore.kind === "memory") return (memoryStore ??= new MemoryBlobStore());
    throw new ConfigError(
      "on Workers, BLOB_STORE may be s3://… or memory:; leave it unset to use the R2 binding ROLLOUTS",
    );
  }
  if (!env.ROLLOUTS) throw new ConfigError("bind an R2 bucket as ROLLOUTS (wrangler.toml) or set BLOB_STORE=s3://…");
  return new R2BlobStore(env.ROLLOUTS);
}

function stringVars(env: WorkerEnv): Env {
  const vars: Env = {};
  for (const [name, value] of Object.entries(env)) if (typeof value === "string") vars[name] = value;
  return vars;
}
