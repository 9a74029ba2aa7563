import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/runtime/config.ts";
import type { DurableObjectNamespaceLike } from "../../src/runtime/sequencer.ts";
import { TenantLimiter } from "../../src/runtime/tenant-limiter.ts";
import { type RateLimitBindingLike, workersAdmission } from "../../src/runtime/workers-admission.ts";

/**
 * The Workers admission in process, with TenantLimiter objects and Rate Limiting
 * bindings faked: which counter each limit goes to, what a limiter that fails does, and
 * that a stream's lease is given back after the answer. (In workerd, with the real
 * bindings: test/edge/worker-limits.test.ts and the contract in worker.test.ts.)
 */

/** TenantLimiter objects in this process, one per name; it counts the calls and can be made to fail. */
function objects() {
  const byName = new Map<string, TenantLimiter>();
  const calls: string[] = [];
  const state = { failing: false };
  const namespace: DurableObjectNamespaceLike = {
    idFromName: (name) => name,
    get: (id) => ({
      fetch: async (input, init) => {
        if (state.failing) throw new Error("the object is unreachable");
        const request = new Request(input, init);
        calls.push(`${String(id)} ${new URL(request.url).pathname}`);
        let object = byName.get(String(id));
        if (!object) byName.set(String(id), object = new TenantLimiter());
        return object.fetch(request);
      },
    }),
  };
  return { namespace, calls, state };
}

/** A binding that admits `limit` per key, forever (the window never rolls over here). */
function binding(limit: number) {
  const counts = new Map<string, number>();
  const keys: string[] = [];
  const fake: RateLimitBindingLike = {
    limit: async ({ key }) => {
      keys.push(key);
      const count = (counts.get(key) ?? 0) + 1;
      counts.set(key, count);
      return { success: count <= limit };
    },
  };
  return { fake, keys };
}

const AUTH = { AUTH_TOKENS: "t:a" };

describe("Workers admission", () => {
  it("is nothing at all when every limit is 0", () => {
    const config = loadConfig({ ...AUTH, RATE_LIMIT_WRITES: "0", RATE_LIMIT_READS: "0", MAX_STREAMS_PER_TENANT: "0" });
    expect(workersAdmission({ TENANT_LIMITER: objects().namespace }, config)).toBeNull();
  });

  it("sends the default rate to the binding, an overridden tenant to its object, and skips a limit of 0", async () => {
    const config = loadConfig({
      ...AUTH,
      RATE_LIMIT_WRITES: "2/s",
      RATE_LIMIT_READS: "3/h",
      RATE_LIMIT_TENANTS: JSON.stringify({ own: { writes: "1/s" }, free: { writes: "0" } }),
    });
    const limiter = objects();
    const writes = binding(20);
    const reads = binding(100);
    const admission = workersAdmission(
      { TENANT_LIMITER: limiter.namespace, WRITE_LIMITER: writes.fake, READ_LIMITER: reads.fake },
      config,
    );
    if (!admission) throw new Error("expected an admission");
    // Default writes: the binding, with its policy (2/s is 20 per 10 s) and no remaining count.
    expect(await admission.take("a", "writes")).toEqual({
      admitted: true,
      limit: "writes",
      headers: { "ratelimit-policy": '"writes";q=20;w=10' },
    });
    for (let i = 0; i < 19; i++) await admission.take("a", "writes");
    expect(await admission.take("a", "writes")).toEqual({
      admitted: false,
      limit: "writes",
      retryAfterSeconds: 10,
      headers: { "ratelimit-policy": '"writes";q=20;w=10', ratelimit: '"writes";r=0;t=10' },
    });
    // A per-hour rate cannot be a binding: reads go to the tenant's object, exactly.
    expect(await admission.take("a", "reads")).toMatchObject({ admitted: true, headers: { ratelimit: /r=5;/ } });
    expect(reads.keys).toEqual([]);
    // A tenant with its own write rate: its object (burst 2), not the binding.
    expect((await admission.take("own", "writes")).admitted).toBe(true);
    expect((await admission.take("own", "writes")).admitted).toBe(true);
    expect((await admission.take("own", "writes")).admitted).toBe(false);
    expect(writes.keys.filter((key) => key === "own")).toEqual([]);
    // A tenant whose writes are 0: no call anywhere.
    const before = limiter.calls.length;
    expect(await admission.take("free", "writes")).toEqual({ admitted: true, limit: "writes", headers: {} });
    expect([limiter.calls.length, writes.keys.includes("free")]).toEqual([before, false]);
  });

  it("keeps a tenant's streams in its object and gives a lease back through waitUntil, after the answer", async () => {
    const config = loadConfig({ ...AUTH, MAX_STREAMS_PER_TENANT: "1" });
    const limiter = objects();
    const background: Promise<unknown>[] = [];
    const admission = workersAdmission(
      { TENANT_LIMITER: limiter.namespace },
      config,
      (work) => void background.push(work),
    );
    if (!admission) throw new Error("expected an admission");
    const slot = await admission.openStream("a");
    if (!slot.admitted) throw new Error("expected a place");
    expect(slot.headers).toEqual({ "ratelimit-policy": '"streams";q=1', ratelimit: '"streams";r=0' });
    expect((await admission.openStream("a")).admitted).toBe(false);
    expect((await admission.openStream("b")).admitted).toBe(true);
    expect(admission.closeStream("a", slot.lease)).toBeUndefined();
    expect(background).toHaveLength(1);
    await Promise.all(background);
    expect((await admission.openStream("a")).admitted).toBe(true);
    expect(limiter.calls.filter((call) => call.startsWith("a "))).toEqual([
      "a /open",
      "a /open",
      "a /close",
      "a /open",
    ]);
  });

  it("admits when the tenant's object cannot be reached: limits never take the service down", async () => {
    const config = loadConfig({ ...AUTH, RATE_LIMIT_WRITES: "1/h", MAX_STREAMS_PER_TENANT: "1" });
    const limiter = objects();
    const admission = workersAdmission({ TENANT_LIMITER: limiter.namespace }, config);
    if (!admission) throw new Error("expected an admission");
    limiter.state.failing = true;
    for (let i = 0; i < 5; i++) {
      expect(await admission.take("a", "writes")).toEqual({ admitted: true, limit: "writes", headers: {} });
    }
    const slot = await admission.openStream("a");
    expect(slot).toEqual({ admitted: true, headers: {}, lease: "-" });
    admission.closeStream("a", "-");
  });

  it("counts in the isolate without TENANT_LIMITER, across requests (each wires a new admission)", async () => {
    const config = loadConfig({ ...AUTH, RATE_LIMIT_WRITES: "1/h", MAX_STREAMS_PER_TENANT: "1" });
    const request = () => workersAdmission({}, config);
    const tenant = `isolate-${crypto.randomUUID()}`;
    expect((await request()?.take(tenant, "writes"))?.admitted).toBe(true);
    expect((await request()?.take(tenant, "writes"))?.admitted).toBe(true);
    expect((await request()?.take(tenant, "writes"))?.admitted).toBe(false);
    const slot = await request()?.openStream(tenant);
    if (!slot?.admitted) throw new Error("expected a place");
    expect((await request()?.openStream(tenant))?.admitted).toBe(false);
    request()?.closeStream(tenant, slot.lease);
    expect((await request()?.openStream(tenant))?.admitted).toBe(true);
  });
});
