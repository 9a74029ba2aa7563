/**
 * Per-tenant buckets and stream leases in this process's memory: the admission of the
 * Node and Deno servers (N processes admit up to N times a limit: docs/decisions.md), and
 * what a tenant's Durable Object keeps on Workers. Memory stays bounded by the tenants
 * active lately: a bucket that has filled up again, and a tenant with no stream open,
 * are forgotten.
 */
import { type Admission, type Rate, streamCapHeaders, type TenantLimits, TokenBucket } from "../model/rate-limits.ts";
import type { RateLimitName, StreamAdmission, TenantAdmission } from "./port.ts";

export interface InProcessOptions {
  /** The limits of a tenant (defaults, or its override). */
  limitsOf: (tenant: string) => TenantLimits;
  /** A lease not given back lapses after this long (ms): the longest a stream may live, and some. */
  leaseMs: number;
  /** Default `Date.now`; tests step it. */
  now?: () => number;
}

/** Over this many remembered buckets, the full ones are dropped (amortized: at most once per this many takes). */
const SWEEP_ABOVE = 10_000;
/** A refused stream is told to retry after this long: a slot frees when some stream ends, which nobody can predict. */
const STREAM_RETRY_SECONDS = 5;

export class InProcessAdmission implements TenantAdmission {
  readonly #options: InProcessOptions;
  readonly #now: () => number;
  /** `${limit} ${tenant}` → bucket. */
  readonly #buckets = new Map<string, { rate: Rate; bucket: TokenBucket }>();
  /** tenant → lease → when it lapses. */
  readonly #leases = new Map<string, Map<string, number>>();
  #sweepAt = SWEEP_ABOVE;
  #nextLease = 0;

  constructor(options: InProcessOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  take(tenant: string, limit: RateLimitName): Admission {
    const rate = this.#options.limitsOf(tenant)[limit];
    if (rate === null) return { admitted: true, limit, headers: {} };
    const now = this.#now();
    const key = `${limit} ${tenant}`;
    let entry = this.#buckets.get(key);
    // A changed limit (a tenant's object handed new limits) starts a fresh bucket.
    if (!entry || !sameRate(entry.rate, rate)) {
      // Swept before the new bucket goes in: a bucket not yet taken from counts as full.
      if (this.#buckets.size >= this.#sweepAt) this.#sweep(now);
      entry = { rate, bucket: new TokenBucket(rate) };
      this.#buckets.set(key, entry);
    }
    return entry.bucket.take(limit, now);
  }

  openStream(tenant: string): StreamAdmission {
    const cap = this.#options.limitsOf(tenant).streams;
    const lease = String(++this.#nextLease);
    if (cap === null) return { admitted: true, headers: {}, lease };
    const now = this.#now();
    let leases = this.#leases.get(tenant);
    if (leases) {
      for (const [id, lapsesAt] of leases) if (lapsesAt <= now) leases.delete(id);
    }
    const open = leases?.size ?? 0;
    if (open >= cap) {
      return { admitted: false, retryAfterSeconds: STREAM_RETRY_SECONDS, headers: streamCapHeaders(cap, open) };
    }
    if (!leases) this.#leases.set(tenant, leases = new Map());
    leases.set(lease, now + this.#options.leaseMs);
    return { admitted: true, headers: streamCapHeaders(cap, open + 1), lease };
  }

  closeStream(tenant: string, lease: string): void {
    const leases = this.#leases.get(tenant);
    if (!leases) return;
    leases.delete(lease);
    if (leases.size === 0) this.#leases.delete(tenant);
  }

  /** Streams the tenant holds open now (for tests and the tenant's object). */
  openStreams(tenant: string): number {
    return this.#leases.get(tenant)?.size ?? 0;
  }

  /** Buckets remembered now (memory stays bounded by the tenants active lately). */
  get rememberedBuckets(): number {
    return this.#buckets.size;
  }

  #sweep(now: number): void {
    for (const [key, { bucket }] of this.#buckets) if (bucket.fullAt(now)) this.#buckets.delete(key);
    // Every tenant still active: sweep again only once as many more have come.
    this.#sweepAt = Math.max(SWEEP_ABOVE, this.#buckets.size * 2);
  }
}

function sameRate(a: Rate, b: Rate): boolean {
  return a === b || (a.count === b.count && a.periodMs === b.periodMs && a.burst === b.burst);
}

/** Limits from defaults and per-tenant overrides (`RATE_LIMIT_TENANTS`). */
export function limitsFrom(defaults: TenantLimits, overrides: ReadonlyMap<string, TenantLimits>) {
  return (tenant: string): TenantLimits => overrides.get(tenant) ?? defaults;
}
