/**
 * Per-tenant limits of API.md "Rate limits": what a limit is, how it is written in the
 * environment, and the token bucket that enforces a rate. Pure: the clock is an argument,
 * so a bucket's edges (burst admitted, burst + 1 refused, one refilled) are testable exactly.
 */
import type { LimitName } from "./metrics.ts";

/** A rate: `count` requests per `periodMs`, and up to `burst` at once from a full bucket. */
export interface Rate {
  readonly count: number;
  readonly periodMs: number;
  readonly burst: number;
}

/** One tenant's limits; `null` is unlimited (`0` in the environment). */
export interface TenantLimits {
  readonly writes: Rate | null;
  readonly reads: Rate | null;
  /** Streams open at once (a many-threads stream is one). */
  readonly streams: number | null;
}

export const UNLIMITED: TenantLimits = { writes: null, reads: null, streams: null };

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000 };

/**
 * `100/s`, `6000/m`, `50/h` (burst twice the count: a client may spend two periods'
 * worth at once, then the rate), `100/s:500` (burst 500), or `0` (unlimited). Throws a
 * message naming the expected form.
 */
export function parseRate(raw: string): Rate | null {
  const text = raw.trim();
  if (text === "0") return null;
  const match = /^([1-9][0-9]{0,8})\/(s|m|h)(?::([1-9][0-9]{0,8}))?$/.exec(text);
  if (!match) throw new Error(`a rate is <count>/<s|m|h>[:<burst>] or 0 (got ${JSON.stringify(raw)})`);
  const count = Number(match[1]);
  return { count, periodMs: UNITS[match[2] as string] as number, burst: match[3] ? Number(match[3]) : count * 2 };
}

/** `100/s` as `RateLimit-Policy` quota terms: `q` tokens per `w` seconds (the bucket's size and refill time). */
export function formatRate(rate: Rate): string {
  const unit = Object.entries(UNITS).find(([, ms]) => ms === rate.periodMs)?.[0] ?? "s";
  return `${rate.count}/${unit}` + (rate.burst === rate.count * 2 ? "" : `:${rate.burst}`);
}

/** What admitting a request said, for its headers (and the 429 when refused). */
export type Admission =
  | { readonly admitted: true; readonly limit: LimitName; readonly headers: Readonly<Record<string, string>> }
  | {
    readonly admitted: false;
    readonly limit: LimitName;
    readonly retryAfterSeconds: number;
    readonly headers: Readonly<Record<string, string>>;
  };

/**
 * A token bucket kept as one number (GCRA, the generic cell rate algorithm): the
 * theoretical arrival time `tat` of the next request. A request at `now` is admitted when
 * the bucket, refilled at `count / periodMs`, holds a token; the bucket holds `burst`.
 * Nothing runs between requests: a bucket is full again once `tat <= now`, and can be
 * forgotten then.
 */
export class TokenBucket {
  #tat = 0;
  readonly #rate: Rate;
  /** ms one token takes to refill. */
  readonly #interval: number;

  constructor(rate: Rate) {
    this.#rate = rate;
    this.#interval = rate.periodMs / rate.count;
  }

  /** True once the bucket is full again (nothing to remember). */
  fullAt(now: number): boolean {
    return this.#tat <= now;
  }

  take(limit: LimitName, now: number): Admission {
    const capacity = this.#rate.burst * this.#interval;
    const tat = Math.max(this.#tat, now) + this.#interval;
    const policy = policyHeader(limit, this.#rate);
    if (tat - now > capacity) {
      // The wait until one token is back, in whole seconds (at least 1: Retry-After has no fractions).
      const wait = Math.max(1, Math.ceil((tat - now - capacity) / 1000));
      return {
        admitted: false,
        limit,
        retryAfterSeconds: wait,
        headers: { ...policy, ratelimit: `"${limit}";r=0;t=${wait}` },
      };
    }
    this.#tat = tat;
    const remaining = Math.floor((capacity - (tat - now)) / this.#interval);
    // t: seconds until the bucket is full again (the quota "resets").
    return {
      admitted: true,
      limit,
      headers: { ...policy, ratelimit: `"${limit}";r=${remaining};t=${Math.ceil((tat - now) / 1000)}` },
    };
  }
}

/**
 * `RateLimit-Policy` of the IETF draft (draft-ietf-httpapi-ratelimit-headers): the quota `q`
 * (the burst) per window `w` (seconds the bucket takes to fill from empty).
 */
function policyHeader(limit: LimitName, rate: Rate): Record<string, string> {
  const window = Math.max(1, Math.round((rate.burst * rate.periodMs) / rate.count / 1000));
  return { "ratelimit-policy": `"${limit}";q=${rate.burst};w=${window}` };
}

/** The headers of a stream cap's answer (`q`: streams at once; no window: a slot frees when a stream ends). */
export function streamCapHeaders(cap: number, open: number): Record<string, string> {
  return { "ratelimit-policy": `"streams";q=${cap}`, ratelimit: `"streams";r=${Math.max(0, cap - open)}` };
}
