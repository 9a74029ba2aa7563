/** Configuration from the environment, as API.md lists it. Web-standard: every runtime passes its env in. */
export interface Config {
  port: number;
  host: string;
  dataDir: string;
  libsqlUrl: string;
  libsqlAuthToken: string | undefined;
  blobStore: BlobStoreConfig;
  maxPayloadBytes: number;
  maxArtifactsPerThread: number;
  snapshotEvery: number;
  corsOrigins: string[];
  cursorSecret: string;
  /** Live stream: log re-read interval without a hint, ping interval, maximum stream lifetime (ms). */
  ssePollMs: number;
  ssePingMs: number;
  sseMaxLifetimeMs: number;
}

export type BlobStoreConfig =
  | { kind: "fs"; dir: string }
  | { kind: "memory" }
  | { kind: "s3"; bucket: string; endpoint: string | undefined; region: string | undefined };

export type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

export function loadConfig(env: Env): Config {
  const dataDir = nonEmpty(env.DATA_DIR) ?? "./data";
  return {
    port: integer(env, "PORT", 8787, 0, 65535),
    host: nonEmpty(env.HOST) ?? "127.0.0.1",
    dataDir,
    libsqlUrl: nonEmpty(env.LIBSQL_URL) ?? `file:${dataDir}/artifacts.db`,
    libsqlAuthToken: nonEmpty(env.LIBSQL_AUTH_TOKEN),
    blobStore: parseBlobStore(nonEmpty(env.BLOB_STORE) ?? `fs:${dataDir}/rollouts`),
    maxPayloadBytes: integer(env, "MAX_PAYLOAD_BYTES", 65536, 2, 64 * 1024 * 1024),
    maxArtifactsPerThread: integer(env, "MAX_ARTIFACTS_PER_THREAD", 1000, 1, 1_000_000),
    snapshotEvery: integer(env, "SNAPSHOT_EVERY", 100, 1, 1_000_000),
    corsOrigins: (env.CORS_ORIGINS ?? "").split(",").map((s) => s.trim()).filter(Boolean),
    // Only signs list positions (never trusted for access: every query is tenant-scoped);
    // set it per deployment so cursors cannot be minted by someone reading this source.
    cursorSecret: nonEmpty(env.CURSOR_SECRET) ?? "thread-artifacts-cursor-v1",
    ssePollMs: integer(env, "SSE_POLL_MS", 1000, 10, 60_000),
    ssePingMs: integer(env, "SSE_PING_MS", 15_000, 10, 15_000),
    sseMaxLifetimeMs: integer(env, "SSE_MAX_LIFETIME_MS", 300_000, 1000, 3_600_000),
  };
}

function parseBlobStore(value: string): BlobStoreConfig {
  if (value.startsWith("fs:")) {
    const dir = value.slice(3);
    if (!dir) throw new ConfigError("BLOB_STORE=fs:<dir> needs a folder");
    return { kind: "fs", dir };
  }
  if (value === "memory:" || value === "memory") return { kind: "memory" };
  if (value.startsWith("s3://")) {
    const url = new URL(value);
    if (!url.hostname) throw new ConfigError("BLOB_STORE=s3://<bucket>?endpoint=..&region=.. needs a bucket");
    return {
      kind: "s3",
      bucket: url.hostname,
      endpoint: url.searchParams.get("endpoint") ?? undefined,
      region: url.searchParams.get("region") ?? undefined,
    };
  }
  throw new ConfigError(`BLOB_STORE must be fs:<dir>, memory: or s3://<bucket>?endpoint=..&region=.. (got ${JSON.stringify(value)})`);
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = nonEmpty(env[name]);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(raw)})`);
  }
  return Number(raw);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}
