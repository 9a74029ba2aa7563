/**
 * The admission port: who keeps a tenant's buckets and open-stream count. In process on
 * Node and Deno (limits per process), in a tenant's Durable Object or behind the Workers
 * Rate Limiting binding on Workers (docs/decisions.md "Rate limits"). The HTTP middleware
 * asks it before any store is touched.
 */
import type { Admission } from "../model/rate-limits.ts";

export type RateLimitName = "writes" | "reads";

/** A stream's place under the tenant's cap, or the refusal. */
export type StreamAdmission =
  | { readonly admitted: true; readonly headers: Readonly<Record<string, string>>; readonly lease: string }
  | {
    readonly admitted: false;
    readonly retryAfterSeconds: number;
    readonly headers: Readonly<Record<string, string>>;
  };

export interface TenantAdmission {
  /** Takes one token from the tenant's `limit` bucket (or says when one will be back). */
  take(tenant: string, limit: RateLimitName): Admission | Promise<Admission>;
  /**
   * Opens a stream under the tenant's cap. The lease is given back with `closeStream`
   * when the stream ends; one never given back (a process or isolate gone) lapses after
   * the longest a stream may live.
   */
  openStream(tenant: string): StreamAdmission | Promise<StreamAdmission>;
  closeStream(tenant: string, lease: string): void | Promise<void>;
}
