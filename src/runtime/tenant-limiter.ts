/**
 * Workers: a tenant's exact limits, one Durable Object per tenant (`idFromName(tenant)`),
 * bound as `TENANT_LIMITER`, and the Worker's side of it.
 *
 * The object holds an `InProcessAdmission` in memory: the tenant's token buckets and its
 * open-stream leases. It needs no configuration: the Worker sends the tenant's
 * `TenantLimits` with every call (a bucket whose rate changed starts afresh). It stores
 * nothing: an evicted object (idle for a while, a restart) forgets its buckets and leases,
 * which only ever admits more (a full bucket, streams not counted until they reconnect),
 * never less. Being one object per tenant, it is exact across every isolate and location,
 * at the cost of one call from the Worker to wherever the object lives (where it was first
 * used) per limited request.
 *
 * Calls are `fetch` to the stub, as for the thread's sequencer (workerd RPC would need the
 * class to extend `DurableObject` from `cloudflare:workers`, which Node and Deno cannot
 * import): `POST /take`, `/open`, `/close` with a JSON body.
 */
import { InProcessAdmission } from "../limits/in-process.ts";
import type { RateLimitName, StreamAdmission } from "../limits/port.ts";
import { TENANT_PATTERN } from "../model/ids.ts";
import type { Admission, TenantLimits } from "../model/rate-limits.ts";
import type { DurableObjectNamespaceLike } from "./sequencer.ts";

/** What every call carries: the tenant (its object's name), and its limits as the Worker's config says. */
interface LimiterCall {
  tenant: string;
  limits: TenantLimits;
}

interface TakeCall extends LimiterCall {
  limit: RateLimitName;
}

interface OpenCall extends LimiterCall {
  /** A lease not given back lapses after this long (ms). */
  leaseMs: number;
}

interface CloseCall {
  tenant: string;
  lease: string;
}

/** The Durable Object class bound as `TENANT_LIMITER` (wrangler.toml). */
export class TenantLimiter {
  /**
   * The limits of the call being served, and its lease time: calls run one at a time
   * (the object's input gate), and each one sets them before it counts.
   */
  readonly #call: { limits: TenantLimits; leaseMs: number } = {
    limits: { writes: null, reads: null, streams: null },
    leaseMs: 60_000,
  };
  /**
   * This instance's leases carry its id, so a lease handed out before an eviction never
   * frees a place taken after it (the new instance counts from 1 again).
   */
  readonly #instance = crypto.randomUUID();
  readonly #admission: InProcessAdmission;

  constructor(_state?: unknown, _env?: unknown) {
    const call = this.#call;
    this.#admission = new InProcessAdmission({
      limitsOf: () => call.limits,
      get leaseMs() {
        return call.leaseMs;
      },
    });
  }

  async fetch(request: Request): Promise<Response> {
    const path = new URL(request.url).pathname;
    if (request.method !== "POST") return invalid(`the tenant limiter takes POST, not ${request.method}`, 405);
    let body: Partial<TakeCall & OpenCall & CloseCall>;
    try {
      body = (await request.json()) as typeof body;
    } catch {
      return invalid("the tenant limiter takes a JSON body");
    }
    const tenant = typeof body.tenant === "string" ? body.tenant : "";
    // Only the Worker calls here, with a tenant it authenticated; refuse anything else all the same.
    if (!TENANT_PATTERN.test(tenant)) return invalid("the tenant limiter needs a tenant");
    switch (path) {
      case "/take": {
        if ((body.limit !== "writes" && body.limit !== "reads") || !isLimits(body.limits)) {
          return invalid("take needs a limit (writes or reads) and the tenant's limits");
        }
        this.#call.limits = body.limits;
        return Response.json(this.#admission.take(tenant, body.limit) satisfies Admission);
      }
      case "/open": {
        if (!isLimits(body.limits) || !(typeof body.leaseMs === "number" && body.leaseMs > 0)) {
          return invalid("open needs the tenant's limits and a lease time");
        }
        this.#call.limits = body.limits;
        this.#call.leaseMs = body.leaseMs;
        const slot = this.#admission.openStream(tenant);
        return Response.json(
          (slot.admitted ? { ...slot, lease: `${this.#instance}.${slot.lease}` } : slot) satisfies StreamAdmission,
        );
      }
      case "/close": {
        const lease = typeof body.lease === "string" ? body.lease : "";
        const dot = lease.lastIndexOf(".");
        // A lease of an earlier instance is gone with it.
        if (lease.slice(0, dot) === this.#instance) this.#admission.closeStream(tenant, lease.slice(dot + 1));
        return new Response(null, { status: 204 });
      }
      default:
        return invalid(`no tenant limiter route ${path}`, 404);
    }
  }
}

function invalid(detail: string, status = 400): Response {
  return Response.json({ code: "invalid_request", detail }, { status });
}

function isLimits(value: unknown): value is TenantLimits {
  if (typeof value !== "object" || value === null) return false;
  const limits = value as Record<string, unknown>;
  const isRate = (rate: unknown) =>
    rate === null ||
    (typeof rate === "object" &&
      [
        (rate as Record<string, unknown>).count,
        (rate as Record<string, unknown>).periodMs,
        (rate as Record<string, unknown>).burst,
      ]
        .every((n) => typeof n === "number" && n > 0));
  return isRate(limits.writes) && isRate(limits.reads) &&
    (limits.streams === null || (typeof limits.streams === "number" && limits.streams > 0));
}

/**
 * The Worker's side: one call to the tenant's object per limited request. A call that
 * fails throws (the Worker's admission decides what that means: it admits).
 */
export class TenantLimiterClient {
  readonly #namespace: DurableObjectNamespaceLike;

  constructor(namespace: DurableObjectNamespaceLike) {
    this.#namespace = namespace;
  }

  take(tenant: string, limit: RateLimitName, limits: TenantLimits): Promise<Admission> {
    return this.#call<Admission>("/take", { tenant, limit, limits } satisfies TakeCall);
  }

  openStream(tenant: string, limits: TenantLimits, leaseMs: number): Promise<StreamAdmission> {
    return this.#call<StreamAdmission>("/open", { tenant, limits, leaseMs } satisfies OpenCall);
  }

  async closeStream(tenant: string, lease: string): Promise<void> {
    await this.#call<null>("/close", { tenant, lease } satisfies CloseCall);
  }

  async #call<T>(path: string, body: TakeCall | OpenCall | CloseCall): Promise<T> {
    const stub = this.#namespace.get(this.#namespace.idFromName(body.tenant));
    const response = await stub.fetch(`https://tenant-limiter${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const text = await response.text().catch(() => "");
      throw new Error(`the tenant limiter answered ${response.status} to ${path}: ${text.slice(0, 200)}`);
    }
    if (response.status === 204) return null as T;
    return (await response.json()) as T;
  }
}
