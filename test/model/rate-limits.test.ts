import { describe, expect, it } from "vitest";
import { InProcessAdmission } from "../../src/limits/in-process.ts";
import { parseRate, type TenantLimits, TokenBucket } from "../../src/model/rate-limits.ts";

describe("a rate as the environment writes it", () => {
  it("reads count per second, minute or hour, a burst twice the count unless given, and 0 as unlimited", () => {
    expect(parseRate("100/s")).toEqual({ count: 100, periodMs: 1000, burst: 200 });
    expect(parseRate("6000/m")).toEqual({ count: 6000, periodMs: 60_000, burst: 12_000 });
    expect(parseRate(" 5/h:7 ")).toEqual({ count: 5, periodMs: 3_600_000, burst: 7 });
    expect(parseRate("0")).toBeNull();
  });

  it("refuses anything else, naming the form", () => {
    for (const bad of ["", "100", "100/d", "-1/s", "1.5/s", "0/s", "10/s:0", "100 / s", "1e3/s"]) {
      expect(() => parseRate(bad), bad).toThrow(/<count>\/<s\|m\|h>/);
    }
  });
});

describe("the token bucket (GCRA)", () => {
  const rate = { count: 10, periodMs: 1000, burst: 20 }; // a token every 100 ms, 20 at once

  it("admits the burst from a full bucket and refuses the next, saying when a token is back", () => {
    const bucket = new TokenBucket(rate);
    const t0 = 1_000_000;
    for (let i = 0; i < 20; i++) {
      const taken = bucket.take("writes", t0);
      expect(taken.admitted, `request ${i + 1}`).toBe(true);
      expect(taken.headers.ratelimit).toBe(`"writes";r=${19 - i};t=${Math.ceil((i + 1) * 100 / 1000)}`);
    }
    const refused = bucket.take("writes", t0);
    expect(refused).toEqual({
      admitted: false,
      limit: "writes",
      retryAfterSeconds: 1,
      headers: { "ratelimit-policy": '"writes";q=20;w=2', ratelimit: '"writes";r=0;t=1' },
    });
  });

  it("refills one token per interval: exactly one more admitted after it, none before", () => {
    const bucket = new TokenBucket(rate);
    const t0 = 5_000;
    for (let i = 0; i < 20; i++) bucket.take("reads", t0);
    expect(bucket.take("reads", t0 + 99).admitted).toBe(false);
    expect(bucket.take("reads", t0 + 100).admitted).toBe(true);
    expect(bucket.take("reads", t0 + 100).admitted).toBe(false);
    // A refused request takes nothing: after two intervals, two are back.
    expect(bucket.take("reads", t0 + 300).admitted).toBe(true);
    expect(bucket.take("reads", t0 + 300).admitted).toBe(true);
    expect(bucket.take("reads", t0 + 300).admitted).toBe(false);
  });

  it("is full again after burst × interval, and never holds more than the burst", () => {
    const bucket = new TokenBucket(rate);
    for (let i = 0; i < 20; i++) bucket.take("writes", 0);
    expect(bucket.fullAt(1999)).toBe(false);
    expect(bucket.fullAt(2000)).toBe(true);
    let admitted = 0;
    while (bucket.take("writes", 60_000).admitted) admitted++;
    expect(admitted).toBe(20);
  });

  it("says a Retry-After of whole seconds, at least one", () => {
    const slow = new TokenBucket({ count: 1, periodMs: 3_600_000, burst: 1 });
    expect(slow.take("writes", 0).admitted).toBe(true);
    const refused = slow.take("writes", 1000);
    expect(refused.admitted).toBe(false);
    if (!refused.admitted) expect(refused.retryAfterSeconds).toBe(3599);
  });
});

describe("in-process admission", () => {
  const limits: TenantLimits = { writes: { count: 1, periodMs: 1000, burst: 2 }, reads: null, streams: 2 };

  function admission(now: { t: number }, overrides: Record<string, TenantLimits> = {}) {
    return new InProcessAdmission({
      limitsOf: (tenant) => overrides[tenant] ?? limits,
      leaseMs: 10_000,
      now: () => now.t,
    });
  }

  it("keeps one bucket per tenant and limit: one tenant's empty bucket refuses nobody else", () => {
    const clock = { t: 0 };
    const limiter = admission(clock);
    expect([1, 2, 3].map(() => limiter.take("a", "writes").admitted)).toEqual([true, true, false]);
    expect(limiter.take("b", "writes").admitted).toBe(true);
    // Unlimited reads: admitted with no headers.
    expect(limiter.take("a", "reads")).toEqual({ admitted: true, limit: "reads", headers: {} });
  });

  it("caps open streams: the cap admitted, one more refused, a closed stream's place free again", () => {
    const clock = { t: 0 };
    const limiter = admission(clock);
    const first = limiter.openStream("a");
    const second = limiter.openStream("a");
    expect([first.admitted, second.admitted]).toEqual([true, true]);
    const third = limiter.openStream("a");
    expect(third).toEqual({
      admitted: false,
      retryAfterSeconds: 5,
      headers: { "ratelimit-policy": '"streams";q=2', ratelimit: '"streams";r=0' },
    });
    expect(limiter.openStream("b").admitted).toBe(true);
    if (first.admitted) limiter.closeStream("a", first.lease);
    expect(limiter.openStreams("a")).toBe(1);
    expect(limiter.openStream("a").admitted).toBe(true);
  });

  it("lets a lease never given back lapse after leaseMs", () => {
    const clock = { t: 0 };
    const limiter = admission(clock);
    limiter.openStream("a");
    limiter.openStream("a");
    clock.t = 9_999;
    expect(limiter.openStream("a").admitted).toBe(false);
    clock.t = 10_000;
    expect(limiter.openStream("a").admitted).toBe(true);
    expect(limiter.openStreams("a")).toBe(1);
  });

  it("applies a tenant's override instead of the defaults", () => {
    const clock = { t: 0 };
    const limiter = admission(clock, { big: { writes: null, reads: null, streams: null } });
    for (let i = 0; i < 100; i++) expect(limiter.take("big", "writes").admitted).toBe(true);
    for (let i = 0; i < 100; i++) expect(limiter.openStream("big").admitted).toBe(true);
  });

  it("forgets the buckets that filled up again once many tenants came by, never one still filling", () => {
    const clock = { t: 0 };
    const limiter = admission(clock);
    for (let i = 0; i < 10_001; i++) limiter.take(`t${i}`, "writes");
    // At the bound, but every bucket is still filling: all kept (and the bound doubled).
    expect(limiter.rememberedBuckets).toBe(10_001);
    clock.t = 2_000; // the t-buckets are full again
    for (let i = 0; i < 10_002; i++) limiter.take(`u${i}`, "writes");
    // The doubled bound was crossed: the 10,001 full ones dropped, the fresh ones kept.
    expect(limiter.rememberedBuckets).toBe(10_002);
    expect(limiter.take("u0", "writes").admitted).toBe(true);
    expect(limiter.take("u0", "writes").admitted).toBe(false);
  });
});
