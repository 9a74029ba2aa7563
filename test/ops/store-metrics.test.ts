/**
 * The store ports' wrappers (blob/instrumented.ts, cache/instrumented.ts) against stub
 * stores: each call's outcome (ok, error, timeout) as the metrics port receives it,
 * what says the cache is up or down, breaker refusals not counted as calls, and results
 * and errors passed through unchanged.
 */
import { describe, expect, it } from "vitest";
import { instrumentBlobStore } from "../../src/blob/instrumented.ts";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import type { BlobStore } from "../../src/blob/port.ts";
import { instrumentCache } from "../../src/cache/instrumented.ts";
import { type ArtifactCache, CacheUnavailableError } from "../../src/cache/port.ts";
import { DeadlineError } from "../../src/model/deadline.ts";
import { type Metrics, noMetrics } from "../../src/model/metrics.ts";

function recording() {
  const calls: [string, string, string][] = [];
  const cacheUp: boolean[] = [];
  const metrics: Metrics = {
    ...noMetrics,
    storeCall: (store, operation, outcome, seconds) => {
      expect(seconds).toBeGreaterThanOrEqual(0);
      calls.push([store, operation, outcome]);
    },
    cacheUp: (up) => void cacheUp.push(up),
  };
  return { metrics, calls, cacheUp };
}

describe("the blob store's wrapper", () => {
  it("records every call with its operation and outcome, and passes results and errors through", async () => {
    const { metrics, calls } = recording();
    const inner = new MemoryBlobStore();
    const store = instrumentBlobStore(inner, metrics);
    expect(store.localReads).toBe(inner.localReads);
    expect(await store.putIfAbsent("a/1", "x")).toBe("created");
    expect(await store.putIfAbsent("a/1", "y")).toBe("exists");
    expect(await store.get("a/1")).toBe("x");
    expect(await store.list("a/")).toEqual(["a/1"]);
    const timeout = new DOMException("the operation timed out", "TimeoutError");
    const failing = instrumentBlobStore({
      get: () => Promise.reject(new Error("S3 said 500")),
      exists: () => Promise.reject(timeout),
    } as Partial<BlobStore> as BlobStore, metrics);
    await expect(failing.get("a/1")).rejects.toThrow("S3 said 500");
    await expect(failing.exists("a/1")).rejects.toBe(timeout);
    expect(calls).toEqual([
      ["blob", "putIfAbsent", "ok"],
      ["blob", "putIfAbsent", "ok"],
      ["blob", "get", "ok"],
      ["blob", "list", "ok"],
      ["blob", "get", "error"],
      ["blob", "exists", "timeout"],
    ]);
  });
});

describe("the cache's wrapper", () => {
  it("says up on any answer, down when the cache is unavailable, and nothing on a SQL error", async () => {
    const { metrics, calls, cacheUp } = recording();
    let next: () => Promise<number> = () => Promise.resolve(3);
    const cache = instrumentCache({ seq: () => next() } as unknown as ArtifactCache, metrics);
    expect(await cache.seq("t", "a")).toBe(3);
    next = () => Promise.reject(new CacheUnavailableError(new DeadlineError("libSQL call", 5000)));
    await expect(cache.seq("t", "a")).rejects.toBeInstanceOf(CacheUnavailableError);
    next = () => Promise.reject(new CacheUnavailableError(new Error("ECONNREFUSED")));
    await expect(cache.seq("t", "a")).rejects.toBeInstanceOf(CacheUnavailableError);
    // The breaker refusing a call asked nothing of libSQL: no call timed, still down.
    next = () => Promise.reject(new CacheUnavailableError("recently failed", true));
    await expect(cache.seq("t", "a")).rejects.toBeInstanceOf(CacheUnavailableError);
    // A SQL error is an answer (a bug to surface), not an outage.
    const sqlError = Object.assign(new Error("no such column"), { code: "SQLITE_ERROR" });
    next = () => Promise.reject(sqlError);
    await expect(cache.seq("t", "a")).rejects.toBe(sqlError);
    expect(calls).toEqual([
      ["libsql", "seq", "ok"],
      ["libsql", "seq", "timeout"],
      ["libsql", "seq", "error"],
      ["libsql", "seq", "error"],
    ]);
    expect(cacheUp).toEqual([true, false, false, false]);
  });
});
