/**
 * Per-tenant limits on Workers (docs/decisions.md "Rate limits"): who counts what.
 *
 * - Rates (`writes`, `reads`): the Workers Rate Limiting binding (`WRITE_LIMITER`,
 *   `READ_LIMITER`) when bound: counted per Cloudflare location, approximately, with no
 *   extra hop; it stands for the default rate (`RATE_LIMIT_WRITES` / `RATE_LIMIT_READS`,
 *   which must say what the binding is configured with). Else, and for a tenant whose
 *   override differs from the default, exactly in the tenant's `TenantLimiter` object
 *   (`TENANT_LIMITER`: one more hop). Without that binding either: in this isolate's
 *   memory (approximate: every isolate, in every location, admits up to a whole limit).
 * - Open streams: in the tenant's `TenantLimiter` (the binding cannot count what ends),
 *   else in this isolate.
 * - A limit that is `0` (unlimited) for the tenant is skipped: no call at all.
 *
 * Limits never take the service down: a limiter that cannot be reached admits (logged
 * once per burst). A stream's lease is given back after the answer (`waitUntil`); one
 * never given back lapses after the longest a stream lives.
 */
import { InProcessAdmission } from "../limits/in-process.ts";
import type { RateLimitName, StreamAdmission, TenantAdmission } from "../limits/port.ts";
import { FaultBurst } from "../logging/faults.ts";
import { logger } from "../logging/logger.ts";
import type { Admission, Rate, TenantLimits } from "../model/rate-limits.ts";
import type { Config } from "./config.ts";
import type { DurableObjectNamespaceLike } from "./sequencer.ts";
import { TenantLimiterClient } from "./tenant-limiter.ts";

/** The Workers Rate Limiting binding (`[[ratelimits]]` in wrangler.toml), structurally. */
export interface RateLimitBindingLike {
  limit(options: { key: string }): Promise<{ success: boolean }>;
}

export interface WorkersAdmissionOptions {
  /** The tenant's limits: the defaults, or its `RATE_LIMIT_TENANTS` override. */
  limitsOf: (tenant: string) => TenantLimits;
  /** The default limits: what the rate limiting bindings stand for. */
  defaults: TenantLimits;
  /** A lease not given back lapses after this long (ms). */
  leaseMs: number;
  /** The tenants' objects (`TENANT_LIMITER`); undefined: this isolate counts. */
  limiter?: TenantLimiterClient;
  /** The rate limiting bindings by limit (`WRITE_LIMITER`, `READ_LIMITER`). */
  bindings?: Partial<Record<RateLimitName, RateLimitBindingLike>>;
  /** Counts when no object does: one per isolate (see `isolateAdmission`). */
  isolate: InProcessAdmission;
  /** Work that must not hold the answer (the request's `waitUntil`). */
  background?: (work: Promise<unknown>) => void;
}

const log = logger("limits");
/** The isolate's calls to limiters (objects, bindings) that failed, logged once per burst. */
const unreachable = new FaultBurst({
  store: "limiter",
  log,
  message: (operation) =>
    `tenant limiter call (${operation}) failed: admitted without counting; further failures are counted, not logged, until it recovers`,
  recovered: "tenant limiters answer again",
});

/** Leases say who holds them: the tenant's object, this isolate, or nobody (unlimited, or admitted while the object was unreachable). */
const OBJECT = "o:";
const ISOLATE = "i:";
const NOBODY = "-";

export class WorkersAdmission implements TenantAdmission {
  readonly #options: WorkersAdmissionOptions;

  constructor(options: WorkersAdmissionOptions) {
    this.#options = options;
  }

  async take(tenant: string, limit: RateLimitName): Promise<Admission> {
    const limits = this.#options.limitsOf(tenant);
    const rate = limits[limit];
    if (rate === null) return { admitted: true, limit, headers: {} };
    const binding = this.#options.bindings?.[limit];
    const window = binding && sameRate(rate, this.#options.defaults[limit]) ? bindingWindow(rate) : null;
    try {
      if (binding && window) return await takeFromBinding(binding, tenant, limit, rate, window);
      if (this.#options.limiter) {
        const taken = await this.#options.limiter.take(tenant, limit, limits);
        unreachable.succeeded();
        return taken;
      }
    } catch (error) {
      unreachable.failed(limit, error);
      return { admitted: true, limit, headers: {} };
    }
    return this.#options.isolate.take(tenant, limit);
  }

  async openStream(tenant: string): Promise<StreamAdmission> {
    const limits = this.#options.limitsOf(tenant);
    if (limits.streams === null) return { admitted: true, headers: {}, lease: NOBODY };
    const limiter = this.#options.limiter;
    if (!limiter) {
      const slot = this.#options.isolate.openStream(tenant);
      return slot.admitted ? { ...slot, lease: ISOLATE + slot.lease } : slot;
    }
    try {
      const slot = await limiter.openStream(tenant, limits, this.#options.leaseMs);
      unreachable.succeeded();
      return slot.admitted ? { ...slot, lease: OBJECT + slot.lease } : slot;
    } catch (error) {
      unreachable.failed("streams", error);
      return { admitted: true, headers: {}, lease: NOBODY };
    }
  }

  closeStream(tenant: string, lease: string): void {
    if (lease.startsWith(ISOLATE)) return this.#options.isolate.closeStream(tenant, lease.slice(ISOLATE.length));
    const limiter = this.#options.limiter;
    if (!limiter || !lease.startsWith(OBJECT)) return;
    // Never holds the stream's end: a lease not given back lapses.
    const work = limiter.closeStream(tenant, lease.slice(OBJECT.length)).catch((error) => {
      unreachable.failed("close", error);
    });
    try {
      this.#options.background?.(work);
    } catch {
      // The request's context is gone (its client left long ago): the call runs without it, or the lease lapses.
    }
  }
}

/**
 * The binding's period for a rate it can stand for: `N/s` is `limit = 10N, period = 10`,
 * `N/m` is `limit = N, period = 60`. A per-hour rate cannot be said in the binding's
 * periods: such a rate is counted exactly instead.
 */
function bindingWindow(rate: Rate): 10 | 60 | null {
  if (rate.periodMs === 1000) return 10;
  if (rate.periodMs === 60_000) return 60;
  return null;
}

/**
 * One request against the binding: it answers yes or no and knows no remaining count,
 * so an admitted answer carries the policy alone (`q` per `w` seconds, the binding's
 * window), and a refusal `r=0` and the window as `Retry-After` (the longest a fixed
 * window takes to roll over).
 */
async function takeFromBinding(
  binding: RateLimitBindingLike,
  tenant: string,
  limit: RateLimitName,
  rate: Rate,
  window: 10 | 60,
): Promise<Admission> {
  const quota = Math.round((rate.count * window * 1000) / rate.periodMs);
  const policy = { "ratelimit-policy": `"${limit}";q=${quota};w=${window}` };
  const { success } = await binding.limit({ key: tenant });
  unreachable.succeeded();
  if (success) return { admitted: true, limit, headers: policy };
  return {
    admitted: false,
    limit,
    retryAfterSeconds: window,
    headers: { ...policy, ratelimit: `"${limit}";r=0;t=${window}` },
  };
}

function sameRate(a: Rate, b: Rate | null): boolean {
  return b !== null && a.count === b.count && a.periodMs === b.periodMs && a.burst === b.burst;
}

/** The limits this isolate counts when no object does (`limitsOf` of the latest request: every request of a deployment has the same). */
const isolateState: { limitsOf: (tenant: string) => TenantLimits; leaseMs: number; admission?: InProcessAdmission } = {
  limitsOf: () => ({ writes: null, reads: null, streams: null }),
  leaseMs: 60_000,
};

/**
 * This isolate's counts, kept across its requests: plain maps, no I/O object, so
 * safe to share between requests (workerd forbids sharing streams, sockets, promises).
 */
export function isolateAdmission(limitsOf: (tenant: string) => TenantLimits, leaseMs: number): InProcessAdmission {
  isolateState.limitsOf = limitsOf;
  isolateState.leaseMs = leaseMs;
  return (isolateState.admission ??= new InProcessAdmission({
    limitsOf: (tenant) => isolateState.limitsOf(tenant),
    get leaseMs() {
      return isolateState.leaseMs;
    },
  }));
}

/** The bindings it looks for (any may be absent): `TENANT_LIMITER`, `WRITE_LIMITER`, `READ_LIMITER`. */
export type WorkersLimitBindings = Readonly<Record<string, unknown>>;

/**
 * The Worker's admission from its bindings and config, or null when nothing is limited
 * (every limit `0` for every tenant). `background`: the request's `waitUntil`.
 */
export function workersAdmission(
  env: WorkersLimitBindings,
  config: Config,
  background?: (work: Promise<unknown>) => void,
): WorkersAdmission | null {
  const { defaults, overrides } = config.rateLimits;
  const limited = (limits: TenantLimits) => limits.writes !== null || limits.reads !== null || limits.streams !== null;
  if (!limited(defaults) && ![...overrides.values()].some(limited)) return null;
  const limitsOf = (tenant: string) => overrides.get(tenant) ?? defaults;
  // A lease lapses a minute after the longest a stream lives, should its end never be seen.
  const leaseMs = config.sseMaxLifetimeMs + 60_000;
  const bindings: Partial<Record<RateLimitName, RateLimitBindingLike>> = {};
  if (isRateLimitBinding(env.WRITE_LIMITER)) bindings.writes = env.WRITE_LIMITER;
  if (isRateLimitBinding(env.READ_LIMITER)) bindings.reads = env.READ_LIMITER;
  return new WorkersAdmission({
    limitsOf,
    defaults,
    leaseMs,
    ...(isNamespace(env.TENANT_LIMITER) ? { limiter: new TenantLimiterClient(env.TENANT_LIMITER) } : {}),
    bindings,
    isolate: isolateAdmission(limitsOf, leaseMs),
    ...(background ? { background } : {}),
  });
}

function isRateLimitBinding(binding: unknown): binding is RateLimitBindingLike {
  return typeof (binding as RateLimitBindingLike | undefined)?.limit === "function";
}

function isNamespace(binding: unknown): binding is DurableObjectNamespaceLike {
  return typeof (binding as DurableObjectNamespaceLike | undefined)?.idFromName === "function";
}
