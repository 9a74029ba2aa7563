import { AsyncLocalStorage } from "node:async_hooks";
import { createClient } from "@libsql/client/web";
import { MemoryBlobStore } from "../blob/memory.ts";
import type { BlobStore } from "../blob/port.ts";
import { R2BlobStore, type R2BucketLike } from "../blob/r2.ts";
import type { SqlClient } from "../cache/libsql.ts";
import { assertAuthPolicy, type Config, ConfigError, type Env, loadConfig } from "./config.ts";
import { s3FromConfig } from "./s3-from-config.ts";
import { configureLogging } from "../logging/configure.ts";
import { type Authenticator, authenticatorFor } from "../http/auth/authenticator.ts";

/** The Worker's bindings: R2 `ROLLOUTS`, the Durable Object `SEQUENCER`, and string vars/secrets. */
export interface WorkerEnv {
  ROLLOUTS?: R2BucketLike;
  SEQUENCER?: unknown;
  [name: string]: unknown;
}

/** Set once any request of this isolate has put the cache schema in place. */
const cacheSchema = { ready: false };
/** `BLOB_STORE=memory:` on Workers lives as long as the isolate: for demos only. */
let memoryStore: MemoryBlobStore | undefined;

export interface WorkerContext {
  config: Config;
  blobStore: BlobStore;
  connectLibsql: () => SqlClient;
  cacheSchema: { ready: boolean };
  /**
   * Built once per env: it digests every configured API token (one SHA-256 each) when it
   * is made, which per request was ~2% of workerd's CPU under load with one token, and
   * grows with the tokens.
   */
  authenticator: Authenticator | null;
}

/**
 * Each env's context, built on its first request: an isolate's env never changes, and
 * building it (the config parsed, the S3 client and its signing key) cost ~0.4 ms of CPU
 * per request when it was done for each (the edge bench's profile). The context is data
 * and clients that hold no I/O object (libSQL clients are opened per use, by
 * `connectLibsql`), so requests may share it. A ConfigError is not kept: every request
 * answers it again.
 */
const contexts = new WeakMap<WorkerEnv, WorkerContext>();

/**
 * What the Worker and the sequencer object are built from, from the env: the config (a
 * Worker is never on loopback, so authentication is required), the rollout store (the R2
 * binding, or S3) and libSQL over HTTP. Throws ConfigError when unusable.
 */
export function loadWorkerContext(env: WorkerEnv): WorkerContext {
  let context = contexts.get(env);
  if (!context) {
    context = buildWorkerContext(env);
    contexts.set(env, context);
  }
  return context;
}

function buildWorkerContext(env: WorkerEnv): WorkerContext {
  const vars = stringVars(env);
  const config = loadConfig(vars);
  configureWorkerLogging(config);
  assertAuthPolicy(config, undefined);
  return {
    config,
    blobStore: workerBlobStore(env, vars, config),
    connectLibsql: () =>
      createClient({ url: config.libsqlUrl, ...(config.libsqlAuthToken ? { authToken: config.libsqlAuthToken } : {}) }),
    cacheSchema,
    authenticator: authenticatorFor(config.auth),
  };
}

let loggingConfigured = false;

/**
 * LogTape for this isolate, once (the Worker's first request or the sequencer object's
 * first call): every record as one object to `console`, which Workers Logs indexes field
 * by field (`[observability]` in wrangler.toml). Request fields travel in node:async_hooks'
 * AsyncLocalStorage (Node.js compatibility is on by default from compatibility date
 * 2026-08-04; wrangler.toml's is later).
 */
export function configureWorkerLogging(config: Pick<Config, "logLevel">): void {
  if (loggingConfigured) return;
  loggingConfigured = true;
  configureLogging({ level: config.logLevel, format: "object", contextLocalStorage: new AsyncLocalStorage() });
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
