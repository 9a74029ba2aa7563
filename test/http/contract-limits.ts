// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readJsonResult } from "../support/http.ts";
import { waitFor } from "../support/wait.ts";
import type { ContractContext, HttpResult, HttpTarget } from "./contract.ts";
import { expectProblem, uniqueThreadId } from "./contract.ts";

const TENANTS = ["writer", "reader", "flood", "calm", "streamer", "public"] as const;
type Tenant = (typeof TENANTS)[number];
const tokenOf = (tenant: Tenant) => `limits-token-${tenant}`;

/**
 * API.md "Rate limits (per tenant)", part of the contract every target runs: each limit
 * at its edge (the burst admitted, one more refused with a 429 that wrote nothing), the
 * tenants' buckets apart, the open-stream cap (a many-threads stream is one), the
 * unlimited routes. Rates are per hour, so no token comes back while a test runs (the
 * refill is tested with a stepped clock: test/http/rate-limits.test.ts).
 */
export function describeRateLimits(ctx: ContractContext): void {
  describe("rate limits (per tenant)", () => {
    let target: HttpTarget | undefined;
    beforeAll(async () => {
      target = await ctx.makeTarget({
        AUTH_TOKENS: TENANTS.map((tenant) => `${tokenOf(tenant)}:${tenant}`).join(","),
        // A burst of 10 (twice the count), refilled at one token every 12 minutes.
        RATE_LIMIT_WRITES: "5/h",
        RATE_LIMIT_READS: "5/h",
        MAX_STREAMS_PER_TENANT: "2",
        // workerd notices a client gone at the stream's next write: ping often, so a closed stream's place frees soon.
        SSE_PING_MS: "200",
        // The streamer polls while a closed stream's place is given back: its reads are unlimited.
        RATE_LIMIT_TENANTS: JSON.stringify({ streamer: { reads: "0" } }),
      });
    });
    afterAll(async () => {
      await target?.close();
    });

    async function call(tenant: Tenant, method: string, path: string, body?: unknown): Promise<HttpResult> {
      const headers: Record<string, string> = { authorization: `Bearer ${tokenOf(tenant)}` };
      const init: RequestInit = { method, headers };
      if (body !== undefined) {
        init.body = JSON.stringify(body);
        headers["content-type"] = "application/json";
      }
      return readJsonResult(await (target as HttpTarget).fetch(path, init));
    }
    const create = (tenant: Tenant, threadId: string, payload: unknown) =>
      call(tenant, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "n", payload });

    function expectRefused(result: HttpResult, limit: "writes" | "reads" | "streams"): void {
      expectProblem(result, 429, "rate_limited");
      expect(Number(result.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(result.headers.get("ratelimit-policy")).toMatch(new RegExp(`^"${limit}";q=\\d+`));
      expect(result.headers.get("ratelimit")).toMatch(new RegExp(`^"${limit}";r=0\\b`));
    }

    it("writes: the burst admitted, one more refused with 429 and Retry-After, and the refused write wrote nothing", async () => {
      const thread = uniqueThreadId("limits-writes");
      for (let i = 1; i <= 10; i++) {
        const result = await create("writer", thread, i);
        expect({ i, status: result.status }).toEqual({ i, status: 201 });
        expect(result.headers.get("ratelimit-policy")).toBe('"writes";q=10;w=7200');
        expect(result.headers.get("ratelimit")).toMatch(new RegExp(`^"writes";r=${10 - i};t=\\d+$`));
      }
      const refused = await create("writer", thread, 11);
      expectRefused(refused, "writes");
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(600); // a token every 12 minutes
      // Every write route takes from the same bucket.
      expectRefused(await call("writer", "DELETE", `/v1/threads/${thread}`), "writes");
      // Nothing was written: the thread holds the ten, at seq 10 (a read: its own bucket).
      const read = await call("writer", "GET", `/v1/threads/${thread}`);
      expect(read.status).toBe(200);
      expect(read.json.thread.rolloutSeq).toBe(10);
      expect(read.json.thread.artifacts.map((a: any) => a.payload)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    });

    it("reads: the burst admitted, one more refused; the tenant's writes are a bucket of their own", async () => {
      const thread = uniqueThreadId("limits-reads");
      expect((await create("reader", thread, "x")).status).toBe(201);
      for (let i = 1; i <= 10; i++) {
        const result = await call("reader", "GET", i % 2 ? `/v1/threads/${thread}` : "/v1/threads");
        expect({ i, status: result.status }).toEqual({ i, status: 200 });
        expect(result.headers.get("ratelimit")).toMatch(new RegExp(`^"reads";r=${10 - i};`));
      }
      expectRefused(await call("reader", "GET", `/v1/threads/${thread}`), "reads");
      const head = await call("reader", "HEAD", `/v1/threads/${thread}`);
      expect([head.status, head.headers.get("ratelimit")]).toEqual([
        429,
        '"reads";r=0;t=' + head.headers.get("retry-after"),
      ]);
      expectRefused(await call("reader", "GET", `/v1/threads/${thread}/events`), "reads");
      expect((await create("reader", thread, "y")).status).toBe(201);
    });

    it("one tenant flooding refuses nobody else: the other's writes all succeed", async () => {
      const floodThread = uniqueThreadId("limits-flood");
      const calmThread = uniqueThreadId("limits-calm");
      const flood = await Promise.all(Array.from({ length: 30 }, (_, i) => create("flood", floodThread, i)));
      const statuses = flood.map((r) => r.status).sort();
      expect(statuses.filter((s) => s === 201)).toHaveLength(10);
      expect(statuses.filter((s) => s === 429)).toHaveLength(20);
      for (let i = 0; i < 10; i++) expect((await create("calm", calmThread, i)).status).toBe(201);
    });

    it("caps a tenant's open streams; a many-threads stream is one; a closed stream's place is free again", async () => {
      const thread = uniqueThreadId("limits-streams");
      const open = async (path: string) => {
        const controller = new AbortController();
        const response = await (target as HttpTarget).fetch(path, {
          headers: { authorization: `Bearer ${tokenOf("streamer")}`, accept: "text/event-stream" },
          signal: controller.signal,
        });
        return { response, close: () => controller.abort() };
      };
      const single = await open(`/v1/threads/${thread}/events`);
      const many = await open(`/v1/events?threads=${thread},${uniqueThreadId("other")},${uniqueThreadId("third")}`);
      expect([single.response.status, many.response.status]).toEqual([200, 200]);
      expect(single.response.headers.get("ratelimit")).toBe('"streams";r=1');
      expect(many.response.headers.get("ratelimit")).toBe('"streams";r=0');
      const third = await open(`/v1/threads/${thread}/events`);
      const refused = await readJsonResult(third.response);
      expectRefused(refused, "streams");
      expect(refused.headers.get("ratelimit-policy")).toBe('"streams";q=2');
      // Another tenant's streams are not counted against this one.
      expect((await call("calm", "GET", `/v1/threads/${thread}`)).status).toBe(404);
      single.close();
      await single.response.body?.cancel().catch(() => {});
      const reopened = await waitFor("the closed stream's place given back", async () => {
        const attempt = await open(`/v1/threads/${thread}/events`);
        if (attempt.response.status === 200) return attempt;
        await attempt.response.body?.cancel().catch(() => {});
        return undefined;
      });
      reopened.close();
      many.close();
    });

    it("never limits health, readiness, liveness or the OpenAPI document", async () => {
      for (let i = 0; i < 25; i++) {
        for (const path of ["/healthz", "/livez", "/readyz", "/v1/openapi.json"]) {
          const response = await (target as HttpTarget).fetch(path, {
            headers: { authorization: `Bearer ${tokenOf("public")}` },
          });
          await response.body?.cancel();
          expect({ path, status: response.status }).toEqual({ path, status: 200 });
          expect(response.headers.get("ratelimit")).toBeNull();
        }
      }
    });
  });
}
