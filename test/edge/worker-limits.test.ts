import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectProblem, uniqueThreadId } from "../http/contract.ts";
import { type JsonResult, readJsonResult } from "../support/http.ts";
import { type HranaServer, startHranaServer } from "../support/hrana-server.ts";
import { startWorker, type WorkerServer } from "../support/worker-process.ts";
import type { DurableObjectNamespaceLike } from "../../src/runtime/sequencer.ts";

/**
 * Per-tenant limits on the Worker beyond the contract (which every target runs, the
 * Worker with exact counting in its TenantLimiter objects: test/edge/worker.test.ts):
 * rates through the Workers Rate Limiting bindings, a tenant whose override sends it to
 * its object or skips a limit, the stream cap kept in the tenant's object, and a Worker
 * with no limiter binding at all (each isolate counts).
 */

const TENANTS = ["a", "b", "vip", "free"] as const;
type Tenant = (typeof TENANTS)[number];
const tokenOf = (tenant: Tenant) => `limits-${tenant}-token`;
const AUTH_TOKENS = TENANTS.map((tenant) => `${tokenOf(tenant)}:${tenant}`).join(",");

interface Target {
  worker: WorkerServer;
  call(tenant: Tenant, method: string, path: string, body?: unknown): Promise<JsonResult>;
  create(tenant: Tenant, threadId: string, payload: unknown): Promise<JsonResult>;
  openStream(tenant: Tenant, path: string): Promise<{ response: Response; close: () => Promise<void> }>;
}

function targetOf(worker: WorkerServer): Target {
  const call = async (tenant: Tenant, method: string, path: string, body?: unknown) => {
    const headers: Record<string, string> = { authorization: `Bearer ${tokenOf(tenant)}` };
    const init: RequestInit = { method, headers };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      headers["content-type"] = "application/json";
    }
    return readJsonResult(await fetch(`${worker.url}${path}`, init));
  };
  return {
    worker,
    call,
    create: (tenant, threadId, payload) =>
      call(tenant, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "n", payload }),
    openStream: async (tenant, path) => {
      const controller = new AbortController();
      const response = await fetch(`${worker.url}${path}`, {
        headers: { authorization: `Bearer ${tokenOf(tenant)}`, accept: "text/event-stream" },
        signal: controller.signal,
      });
      return {
        response,
        close: async () => {
          controller.abort();
          await response.body?.cancel().catch(() => {});
        },
      };
    },
  };
}

/**
 * Miniflare's local rate limiter counts in fixed windows aligned to the clock: a test
 * that needs one window whole starts early in one.
 */
async function earlyInAWindow(periodS: number, needMs: number): Promise<void> {
  const left = periodS * 1000 - (Date.now() % (periodS * 1000));
  if (left < needMs) await new Promise((resolve) => setTimeout(resolve, left + 50));
}

function expectRefused(result: JsonResult, limit: "writes" | "reads" | "streams"): void {
  expectProblem(result, 429, "rate_limited");
  expect(Number(result.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
  expect(result.headers.get("ratelimit-policy")).toMatch(new RegExp(`^"${limit}";q=\\d+`));
  expect(result.headers.get("ratelimit")).toMatch(new RegExp(`^"${limit}";r=0\\b`));
}

describe("Worker limits with the Rate Limiting binding (WRITE_LIMITER) and TenantLimiter objects", () => {
  let dir: string;
  let hrana: HranaServer;
  let t: Target;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "artifacts-worker-limits-"));
    hrana = await startHranaServer({ path: join(dir, "cache.db") });
    const worker = await startWorker({
      LIBSQL_URL: hrana.url,
      AUTH_TOKENS,
      // What the binding is configured with, so the headers can say it.
      RATE_LIMIT_WRITES: "5/m",
      // No READ_LIMITER: reads are counted exactly in the tenant's object.
      RATE_LIMIT_READS: "100/m",
      MAX_STREAMS_PER_TENANT: "2",
      // vip: its own rate, which the binding cannot stand for (its object counts); free: never limited.
      RATE_LIMIT_TENANTS: JSON.stringify({ vip: { writes: "3/h" }, free: { writes: "0" } }),
    }, { rateLimits: { writes: { limit: 5, period: 60 } } });
    t = targetOf(worker);
  });
  afterAll(async () => {
    await t?.worker.stop();
    await hrana?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("refuses writes past the binding's limit with 429 rate_limited and Retry-After; another tenant is unaffected", async () => {
    await earlyInAWindow(60, 20_000);
    const thread = uniqueThreadId("binding-writes");
    for (let i = 1; i <= 5; i++) {
      const result = await t.create("a", thread, i);
      expect({ i, status: result.status }).toEqual({ i, status: 201 });
      // The binding says yes or no, no remaining count: the policy alone.
      expect(result.headers.get("ratelimit-policy")).toBe('"writes";q=5;w=60');
      expect(result.headers.get("ratelimit")).toBeNull();
    }
    const refused = await t.create("a", thread, 6);
    expectRefused(refused, "writes");
    expect(refused.headers.get("retry-after")).toBe("60");
    expect(refused.headers.get("ratelimit-policy")).toBe('"writes";q=5;w=60');
    expect(refused.headers.get("ratelimit")).toBe('"writes";r=0;t=60');
    // Every write route takes from the same count.
    expectRefused(await t.call("a", "DELETE", `/v1/threads/${thread}`), "writes");
    // Nothing was written; reads are counted apart (in the tenant's object, exactly).
    const read = await t.call("a", "GET", `/v1/threads/${thread}`);
    expect(read.status).toBe(200);
    expect(read.json.thread.rolloutSeq).toBe(5);
    expect(read.headers.get("ratelimit")).toMatch(/^"reads";r=\d+;t=\d+$/);
    // Another tenant's key is its own.
    const other = uniqueThreadId("binding-other");
    for (let i = 1; i <= 5; i++) expect((await t.create("b", other, i)).status).toBe(201);
  });

  it("counts a tenant with its own rate in its object, and never limits a tenant whose override is 0", async () => {
    const thread = uniqueThreadId("override");
    // vip: 3/h, a burst of 6, counted exactly (remaining counts down).
    for (let i = 1; i <= 6; i++) {
      const result = await t.create("vip", thread, i);
      expect({ i, status: result.status }).toEqual({ i, status: 201 });
      expect(result.headers.get("ratelimit-policy")).toBe('"writes";q=6;w=7200');
      expect(result.headers.get("ratelimit")).toMatch(new RegExp(`^"writes";r=${6 - i};t=\\d+$`));
    }
    expectRefused(await t.create("vip", thread, 7), "writes");
    // free: writes "0", past the binding's 5 with no limit and no headers.
    const free = uniqueThreadId("free");
    for (let i = 1; i <= 8; i++) {
      const result = await t.create("free", free, i);
      expect({ i, status: result.status }).toEqual({ i, status: 201 });
      expect(result.headers.get("ratelimit")).toBeNull();
      expect(result.headers.get("ratelimit-policy")).toBeNull();
    }
  });

  it("caps a tenant's streams in its TenantLimiter, across separate streams; another tenant's are its own", async () => {
    const first = await t.openStream("a", `/v1/threads/${uniqueThreadId("cap-1")}/events`);
    const second = await t.openStream("a", `/v1/events?threads=${uniqueThreadId("cap-2")},${uniqueThreadId("cap-3")}`);
    const others: Array<{ close: () => Promise<void> }> = [first, second];
    try {
      expect([first.response.status, second.response.status]).toEqual([200, 200]);
      expect(first.response.headers.get("ratelimit")).toBe('"streams";r=1');
      expect(second.response.headers.get("ratelimit")).toBe('"streams";r=0');
      const third = await t.openStream("a", `/v1/threads/${uniqueThreadId("cap-4")}/events`);
      const refused = await readJsonResult(third.response);
      expectRefused(refused, "streams");
      expect(refused.headers.get("ratelimit-policy")).toBe('"streams";q=2');
      // The count lives in the tenant's object: asked directly, it holds both places.
      const namespace =
        (await t.worker.mf.getDurableObjectNamespace("TENANT_LIMITER")) as unknown as DurableObjectNamespaceLike;
      const stub = namespace.get(namespace.idFromName("a"));
      const direct = await stub.fetch("https://tenant-limiter/open", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          tenant: "a",
          limits: { writes: null, reads: null, streams: 2 },
          leaseMs: 60_000,
        }),
      });
      expect(await direct.json()).toMatchObject({ admitted: false, headers: { ratelimit: '"streams";r=0' } });
      // Another tenant has its own object and its own places.
      const b = await t.openStream("b", `/v1/threads/${uniqueThreadId("cap-b")}/events`);
      others.push(b);
      expect([b.response.status, b.response.headers.get("ratelimit")]).toEqual([200, '"streams";r=1']);
    } finally {
      await Promise.all(others.map((stream) => stream.close()));
    }
  });
});

describe("Worker limits with no limiter binding bound", () => {
  let dir: string;
  let hrana: HranaServer;
  let t: Target;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "artifacts-worker-limits-isolate-"));
    hrana = await startHranaServer({ path: join(dir, "cache.db") });
    const worker = await startWorker({
      LIBSQL_URL: hrana.url,
      AUTH_TOKENS,
      RATE_LIMIT_WRITES: "5/h",
      MAX_STREAMS_PER_TENANT: "1",
    }, { tenantLimiter: false });
    t = targetOf(worker);
  });
  afterAll(async () => {
    await t?.worker.stop();
    await hrana?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("still serves, and limits per isolate (one isolate here: exactly)", async () => {
    const thread = uniqueThreadId("isolate");
    for (let i = 1; i <= 10; i++) {
      const result = await t.create("a", thread, i);
      expect({ i, status: result.status }).toEqual({ i, status: 201 });
      expect(result.headers.get("ratelimit")).toMatch(new RegExp(`^"writes";r=${10 - i};t=\\d+$`));
    }
    expectRefused(await t.create("a", thread, 11), "writes");
    expect((await t.create("b", thread, 1)).status).toBe(201);
    const read = await t.call("a", "GET", `/v1/threads/${thread}`);
    expect([read.status, read.json.thread.rolloutSeq]).toEqual([200, 10]);
    const stream = await t.openStream("a", `/v1/threads/${thread}/events`);
    try {
      expect(stream.response.status).toBe(200);
      expect(stream.response.headers.get("ratelimit")).toBe('"streams";r=0');
      const refused = await t.openStream("a", `/v1/threads/${thread}/events`);
      expectRefused(await readJsonResult(refused.response), "streams");
    } finally {
      await stream.close();
    }
  });
});
