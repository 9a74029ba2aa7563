import { authConfigured, type AuthSettings } from "../http/auth/authenticator.ts";
import { MAX_THREADS_PER_STREAM } from "../http/thread-set.ts";
import { TENANT_PATTERN } from "../model/ids.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevelName } from "../logging/configure.ts";
import { parseRate, type Rate, type TenantLimits, UNLIMITED } from "../model/rate-limits.ts";

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
  /** A compacted delta once the commits since the last cross a multiple of this many seqs (rollout/compaction.ts). */
  compactEvery: number;
  /**
   * How long the commit keys of a deleted thread's earlier lives stay occupied by stubs
   * (ms; service/thread-sweeper.ts): far longer than any request lives.
   */
  deleteRetentionMs: number;
  corsOrigins: string[];
  auth: AuthSettings;
  cursorSecret: string;
  /** Live stream: log re-read interval without a hint, ping interval, maximum stream lifetime (ms). */
  ssePollMs: number;
  ssePingMs: number;
  sseMaxLifetimeMs: number;
  /** Live stream: a write its client has not taken after this long ends the stream (ms). */
  sseStallMs: number;
  /**
   * `MAX_STREAM_THREADS`: the most threads one `GET /v1/events` stream may follow (1–100,
   * default 100, API.md's bound). On Workers each costs the stream's request a WebSocket
   * to the thread's sequencer: Workers Free (50 subrequests) takes at most 44 (see README).
   */
  maxStreamThreads: number;
  /** `LOG_LEVEL`: the least severe level logged. */
  logLevel: LogLevelName;
  /** `LOG_FORMAT`; undefined: the runtime decides (JSON lines unless stdout is a terminal). */
  logFormat: LogFormat | undefined;
  /** `METRICS_TOKEN`: the bearer token `GET /metrics` needs; unset: served only on loopback without authentication. */
  metricsToken: string | undefined;
  /** `METRICS` (`on` | `off`): off records nothing and serves no `/metrics` (the benchmark's baseline). */
  metricsEnabled: boolean;
  /**
   * Per-tenant limits (API.md "Rate limits"): `RATE_LIMIT_WRITES`, `RATE_LIMIT_READS`,
   * `MAX_STREAMS_PER_TENANT`, each defaulting to `RATE_LIMIT_DEFAULTS` when authentication
   * is configured and to unlimited when it is not; `RATE_LIMIT_TENANTS` overrides them per tenant.
   */
  rateLimits: { defaults: TenantLimits; overrides: Map<string, TenantLimits> };
  /** API.md "Webhooks": subscriptions a tenant may hold (`MAX_WEBHOOKS_PER_TENANT`). */
  maxWebhooksPerTenant: number;
  /** `WEBHOOK_ALLOW_HTTP_LOOPBACK=1`: `http://` URLs to loopback hosts allowed (development and tests). */
  webhookAllowHttpLoopback: boolean;
  /** How long one event is retried before its webhook turns `failing` (ms; `WEBHOOK_RETRY_HOURS`). */
  webhookRetryMs: number;
  /** The first retry's delay, doubling up to an hour (`WEBHOOK_RETRY_BASE_MS`). */
  webhookRetryBaseMs: number;
  /** How often a server looks for other processes' commits to deliver (ms; `WEBHOOK_SWEEP_MS`). */
  webhookSweepMs: number;
  /** A webhook's delivery lease (ms; `WEBHOOK_LEASE_MS`): a dead holder's webhooks wait at most this long. */
  webhookLeaseMs: number;
}

/**
 * The limits a deployed service starts with (docs/decisions.md "Rate limits": one Node
 * process sustains ~1,500 creates/s over many threads, so ten tenants at their write
 * limit still leave it room; reads cost a tenth of a write; a browser tab holds one or two
 * streams, so 100 is a hundred tabs).
 */
export const RATE_LIMIT_DEFAULTS: TenantLimits = {
  writes: { count: 100, periodMs: 1000, burst: 200 },
  reads: { count: 500, periodMs: 1000, burst: 1000 },
  streams: 100,
};

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
  const auth: AuthSettings = {
    tokens: parseTokens(env.AUTH_TOKENS),
    jwtSecret: nonEmpty(env.AUTH_JWT_SECRET),
    jwksUrl: parseUrl("AUTH_JWKS_URL", env.AUTH_JWKS_URL),
    clockSkewSeconds: integer(env, "AUTH_CLOCK_SKEW_SECONDS", 60, 0, 600),
  };
  return {
    port: integer(env, "PORT", 8787, 0, 65535),
    host: nonEmpty(env.HOST) ?? "127.0.0.1",
    dataDir,
    libsqlUrl: nonEmpty(env.LIBSQL_URL) ?? `file:${dataDir}/artifacts.db`,
    libsqlAuthToken: nonEmpty(env.LIBSQL_AUTH_TOKEN),
    blobStore: parseBlobStore(nonEmpty(env.BLOB_STORE) ?? `fs:${dataDir}/rollouts`),
    maxPayloadBytes: integer(env, "MAX_PAYLOAD_BYTES", 65536, 2, 64 * 1024 * 1024),
    maxArtifactsPerThread: integer(env, "MAX_ARTIFACTS_PER_THREAD", 1000, 1, 1_000_000),
    compactEvery: integer(env, "COMPACT_EVERY", 64, 1, 1_000_000),
    deleteRetentionMs: integer(env, "DELETE_RETENTION_HOURS", 168, 1, 24 * 3650) * 3600 * 1000,
    corsOrigins: parseCorsOrigins(env.CORS_ORIGINS),
    auth,
    // Only signs list positions (never trusted for access: every query is tenant-scoped);
    // set it per deployment so cursors cannot be minted by someone reading this source.
    cursorSecret: nonEmpty(env.CURSOR_SECRET) ?? "thread-artifacts-cursor-v1",
    ssePollMs: integer(env, "SSE_POLL_MS", 1000, 10, 60_000),
    ssePingMs: integer(env, "SSE_PING_MS", 15_000, 10, 15_000),
    sseMaxLifetimeMs: integer(env, "SSE_MAX_LIFETIME_MS", 300_000, 1000, 3_600_000),
    sseStallMs: integer(env, "SSE_STALL_MS", 15_000, 100, 600_000),
    maxStreamThreads: integer(env, "MAX_STREAM_THREADS", MAX_THREADS_PER_STREAM, 1, MAX_THREADS_PER_STREAM),
    logLevel: oneOf(env, "LOG_LEVEL", LOG_LEVELS) ?? "info",
    logFormat: oneOf(env, "LOG_FORMAT", LOG_FORMATS),
    metricsToken: nonEmpty(env.METRICS_TOKEN),
    metricsEnabled: oneOf(env, "METRICS", ["on", "off"] as const) !== "off",
    rateLimits: parseRateLimits(env, authConfigured(auth)),
    maxWebhooksPerTenant: integer(env, "MAX_WEBHOOKS_PER_TENANT", 20, 0, 10_000),
    webhookAllowHttpLoopback: oneOf(env, "WEBHOOK_ALLOW_HTTP_LOOPBACK", ["0", "1"] as const) === "1",
    webhookRetryMs: integer(env, "WEBHOOK_RETRY_HOURS", 24, 1, 24 * 30) * 3_600_000,
    webhookRetryBaseMs: integer(env, "WEBHOOK_RETRY_BASE_MS", 1000, 10, 3_600_000),
    webhookSweepMs: integer(env, "WEBHOOK_SWEEP_MS", 5000, 50, 600_000),
    webhookLeaseMs: integer(env, "WEBHOOK_LEASE_MS", 30_000, 300, 3_600_000),
  };
}

function parseRateLimits(env: Env, authenticated: boolean): Config["rateLimits"] {
  // Limits protect a service others can reach; a loopback one without authentication has none.
  const base = authenticated ? RATE_LIMIT_DEFAULTS : UNLIMITED;
  const defaults: TenantLimits = {
    writes: rateVar(env, "RATE_LIMIT_WRITES", base.writes),
    reads: rateVar(env, "RATE_LIMIT_READS", base.reads),
    streams: streamsVar(env.MAX_STREAMS_PER_TENANT, "MAX_STREAMS_PER_TENANT", base.streams),
  };
  return { defaults, overrides: parseTenantLimits(env.RATE_LIMIT_TENANTS, defaults) };
}

function rateVar(env: Env, name: string, fallback: Rate | null): Rate | null {
  const raw = nonEmpty(env[name]);
  if (raw === undefined) return fallback;
  try {
    return parseRate(raw);
  } catch (error) {
    throw new ConfigError(`${name}: ${(error as Error).message}`);
  }
}

function streamsVar(value: unknown, name: string, fallback: number | null): number | null {
  if (value === undefined || (typeof value === "string" && value.trim() === "")) return fallback;
  const text = String(value).trim();
  if (!/^\d{1,9}$/.test(text)) {
    throw new ConfigError(`${name} must be a count of streams, 0 for unlimited (got ${JSON.stringify(value)})`);
  }
  return Number(text) === 0 ? null : Number(text);
}

/**
 * `RATE_LIMIT_TENANTS`: a JSON object from tenant to its own limits, any of `writes`,
 * `reads` (rates as above) and `streams` (a count); what a tenant's entry leaves out
 * is the default. `{"acme": {"writes": "1000/s", "streams": 500}, "batch": {"reads": "0"}}`.
 */
function parseTenantLimits(value: string | undefined, defaults: TenantLimits): Map<string, TenantLimits> {
  const overrides = new Map<string, TenantLimits>();
  const raw = nonEmpty(value);
  if (raw === undefined) return overrides;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigError("RATE_LIMIT_TENANTS must be a JSON object of tenant to {writes, reads, streams}");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError("RATE_LIMIT_TENANTS must be a JSON object of tenant to {writes, reads, streams}");
  }
  for (const [tenant, entry] of Object.entries(parsed)) {
    const where = `RATE_LIMIT_TENANTS[${JSON.stringify(tenant)}]`;
    if (!TENANT_PATTERN.test(tenant)) throw new ConfigError(`${where}: not a tenant id`);
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new ConfigError(`${where} must be an object of writes, reads and streams`);
    }
    const fields = entry as Record<string, unknown>;
    for (const key of Object.keys(fields)) {
      if (key !== "writes" && key !== "reads" && key !== "streams") {
        throw new ConfigError(`${where}: unknown limit ${JSON.stringify(key)} (writes, reads, streams)`);
      }
    }
    const rate = (key: "writes" | "reads"): Rate | null => {
      const v = fields[key];
      if (v === undefined) return defaults[key];
      if (typeof v !== "string") throw new ConfigError(`${where}.${key} must be a rate such as "100/s", or "0"`);
      return rateVar({ [`${where}.${key}`]: v }, `${where}.${key}`, defaults[key]);
    };
    overrides.set(tenant, {
      writes: rate("writes"),
      reads: rate("reads"),
      streams: streamsVar(fields.streams, `${where}.streams`, defaults.streams),
    });
  }
  return overrides;
}

/** `AUTH_TOKENS="tokenA:tenantA,tokenB:tenantB"`; a token may itself contain `:` (split at the last one). */
function parseTokens(value: string | undefined): Map<string, string> {
  const tokens = new Map<string, string>();
  for (const entry of (value ?? "").split(",").map((s) => s.trim()).filter(Boolean)) {
    const colon = entry.lastIndexOf(":");
    const token = entry.slice(0, colon);
    const tenant = entry.slice(colon + 1);
    // Never echo the token itself: configuration errors end up in logs.
    if (colon <= 0 || !TENANT_PATTERN.test(tenant)) {
      throw new ConfigError(
        `AUTH_TOKENS entry ${tokens.size + 1} must be <token>:<tenant>, the tenant 1-128 chars of [A-Za-z0-9._:-]`,
      );
    }
    tokens.set(token, tenant);
  }
  return tokens;
}

function parseCorsOrigins(value: string | undefined): string[] {
  const origins = (value ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  for (const origin of origins) {
    if (origin !== "*" && !/^https?:\/\/[^/\s]+$/.test(origin)) {
      throw new ConfigError(
        `CORS_ORIGINS entries must be origins like https://app.example.com (got ${JSON.stringify(origin)})`,
      );
    }
  }
  return origins;
}

function parseUrl(name: string, value: string | undefined): string | undefined {
  const url = nonEmpty(value);
  if (url === undefined) return undefined;
  if (!/^https?:\/\//.test(url)) throw new ConfigError(`${name} must be an http(s) URL`);
  return url;
}

/** Hosts that only this machine can reach: the only ones a server may listen on without authentication. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127(\.\d{1,3}){3}$/.test(h);
}

/**
 * The rule of API.md: with no authentication configured, serve only on loopback
 * (tenant `local`). `host` is where the server listens, or undefined where the
 * runtime cannot know (edge hosts): then authentication is required.
 */
export function assertAuthPolicy(config: Config, host: string | undefined): void {
  if (authConfigured(config.auth)) return;
  if (host !== undefined && isLoopbackHost(host)) return;
  throw new ConfigError(
    host === undefined
      ? "authentication is required here: set AUTH_TOKENS, AUTH_JWT_SECRET or AUTH_JWKS_URL"
      : `refusing to listen on ${host} without authentication: set AUTH_TOKENS, AUTH_JWT_SECRET or AUTH_JWKS_URL, or listen on a loopback HOST (127.0.0.1)`,
  );
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
  throw new ConfigError(
    `BLOB_STORE must be fs:<dir>, memory: or s3://<bucket>?endpoint=..&region=.. (got ${JSON.stringify(value)})`,
  );
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = nonEmpty(env[name]);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(raw)})`);
  }
  return Number(raw);
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[]): T | undefined {
  const raw = nonEmpty(env[name])?.toLowerCase();
  if (raw === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(", ")} (got ${JSON.stringify(env[name])})`);
  }
  return raw as T;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}
