// deno-lint-ignore-file no-explicit-any -- the OpenAPI document is walked as plain JSON
import { describe, expect, it } from "vitest";
import { InProcessAdmission, limitsFrom } from "../../src/limits/in-process.ts";
import { type LimitName, type Metrics, noMetrics } from "../../src/model/metrics.ts";
import { openApiDocument } from "../../src/http/openapi.ts";
import { ROUTES } from "../../src/http/routes.ts";
import { ConfigError, loadConfig, RATE_LIMIT_DEFAULTS } from "../../src/runtime/config.ts";
import { useTestApps } from "../support/in-process.ts";
import { expectProblem, uniqueThreadId } from "./contract.ts";

/**
 * What the contract suite (contract-limits.ts) cannot do on every target: step the clock
 * to see a bucket refill through the whole app, count the refusals, and check the
 * configuration and the OpenAPI document.
 */
describe("rate limits in the app", () => {
  const app = useTestApps();
  const auth = { AUTH_TOKENS: "token-a:a,token-b:b" };
  const as = (tenant: "a" | "b") => ({ authorization: `Bearer token-${tenant}` });

  it("refills the bucket: one more write admitted after one interval, and every refusal is counted by limit", async () => {
    const clock = { t: 1_000_000 };
    const refusals: LimitName[] = [];
    const metrics: Metrics = { ...noMetrics, rateLimited: (limit) => void refusals.push(limit) };
    const config = loadConfig({ ...auth, RATE_LIMIT_WRITES: "2/s:3" });
    const t = app({
      env: { ...auth, RATE_LIMIT_WRITES: "2/s:3" },
      metrics,
      admission: new InProcessAdmission({
        limitsOf: limitsFrom(config.rateLimits.defaults, config.rateLimits.overrides),
        leaseMs: 60_000,
        now: () => clock.t,
      }),
    });
    const thread = uniqueThreadId("refill");
    const create = () =>
      t.request("POST", `/v1/threads/${thread}/artifacts`, { artifactType: "n", payload: 1 }, as("a"));
    for (let i = 0; i < 3; i++) expect((await create()).status).toBe(201);
    expectProblem(await create(), 429, "rate_limited");
    clock.t += 499;
    expectProblem(await create(), 429, "rate_limited");
    clock.t += 1; // one token every 500 ms
    expect((await create()).status).toBe(201);
    expectProblem(await create(), 429, "rate_limited");
    expect(refusals).toEqual(["writes", "writes", "writes"]);
    const read = await t.request("GET", `/v1/threads/${thread}`, undefined, as("a"));
    expect(read.json.thread.rolloutSeq).toBe(4);
  });

  it("has no limits on loopback without authentication, and the documented defaults once it is configured", async () => {
    expect(loadConfig({}).rateLimits.defaults).toEqual({ writes: null, reads: null, streams: null });
    expect(loadConfig(auth).rateLimits.defaults).toEqual(RATE_LIMIT_DEFAULTS);
    expect(RATE_LIMIT_DEFAULTS).toEqual({
      writes: { count: 100, periodMs: 1000, burst: 200 },
      reads: { count: 500, periodMs: 1000, burst: 1000 },
      streams: 100,
    });
    // Explicit limits apply without authentication too; 0 is unlimited with it.
    expect(loadConfig({ RATE_LIMIT_WRITES: "10/m" }).rateLimits.defaults.writes).toEqual({
      count: 10,
      periodMs: 60_000,
      burst: 20,
    });
    expect(loadConfig({ ...auth, RATE_LIMIT_READS: "0", MAX_STREAMS_PER_TENANT: "0" }).rateLimits.defaults)
      .toMatchObject({ reads: null, streams: null });
    // With nothing limited, no admission is wired at all: every write of a local server is as before.
    const t = app();
    const created = await t.request("POST", `/v1/threads/${uniqueThreadId("free")}/artifacts`, {
      artifactType: "n",
      payload: 1,
    });
    expect(created.status).toBe(201);
    expect(created.headers.get("ratelimit")).toBeNull();
  });

  it("reads per-tenant overrides, what an entry leaves out being the default, and refuses bad ones", () => {
    const { overrides } = loadConfig({
      ...auth,
      RATE_LIMIT_TENANTS: JSON.stringify({ a: { writes: "1000/s", streams: 5 }, b: { reads: "0" } }),
    }).rateLimits;
    expect(overrides.get("a")).toEqual({
      writes: { count: 1000, periodMs: 1000, burst: 2000 },
      reads: RATE_LIMIT_DEFAULTS.reads,
      streams: 5,
    });
    expect(overrides.get("b")).toEqual({ ...RATE_LIMIT_DEFAULTS, reads: null });
    for (
      const bad of [
        "[]",
        "{",
        JSON.stringify({ a: { writes: 5 } }),
        JSON.stringify({ a: { burst: "5/s" } }),
        JSON.stringify({ "bad tenant": {} }),
        JSON.stringify({ a: { streams: -1 } }),
      ]
    ) {
      expect(() => loadConfig({ ...auth, RATE_LIMIT_TENANTS: bad }), bad).toThrow(ConfigError);
    }
    expect(() => loadConfig({ RATE_LIMIT_WRITES: "fast" })).toThrow(/RATE_LIMIT_WRITES: a rate is/);
    expect(() => loadConfig({ MAX_STREAMS_PER_TENANT: "-1" })).toThrow(/MAX_STREAMS_PER_TENANT/);
  });

  it("an override lifts one tenant's limit and leaves the other's", async () => {
    const env = { ...auth, RATE_LIMIT_WRITES: "1/h:1", RATE_LIMIT_TENANTS: JSON.stringify({ b: { writes: "0" } }) };
    const t = app({ env });
    const thread = uniqueThreadId("override");
    const create = (tenant: "a" | "b") =>
      t.request("POST", `/v1/threads/${thread}/artifacts`, { artifactType: "n", payload: 1 }, as(tenant));
    expect((await create("a")).status).toBe(201);
    expectProblem(await create("a"), 429, "rate_limited");
    for (let i = 0; i < 5; i++) expect((await create("b")).status).toBe(201);
  });

  it("documents a 429 on every limited route of the OpenAPI document, and on no public one", () => {
    const doc = openApiDocument() as { paths: Record<string, Record<string, { responses: Record<string, any> }>> };
    const publicPaths = new Set(
      Object.values(ROUTES).filter((r) => "public" in r && r.public).map((r) => r.path.replace(/:(\w+)/g, "{$1}")),
    );
    let limited = 0;
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const has429 = "429" in operation.responses;
        expect({ path, method, has429 }).toEqual({ path, method, has429: !publicPaths.has(path) });
        if (has429) {
          limited++;
          expect(Object.keys(operation.responses["429"].headers)).toEqual(
            expect.arrayContaining(["Retry-After", "RateLimit-Policy", "RateLimit"]),
          );
        }
      }
    }
    expect(limited).toBeGreaterThanOrEqual(10);
  });
});
