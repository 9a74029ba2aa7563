/**
 * Structured logs (API.md "Operations", docs/decisions.md#logs):
 * - a real Node server writes JSON lines on stdout (not a terminal): the request id of a
 *   response is in the access line of that request, with method, route template, status,
 *   duration and tenant; probes are not logged per request; LOG_LEVEL=error leaves only
 *   errors (and the start and shutdown lines);
 * - in process: one access line per request, the request id on every line of the request
 *   (a cache warning included), the active span's trace id, store faults logged once per
 *   burst, the line formats.
 */
import { context, ROOT_CONTEXT, trace, TraceFlags } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { describe, expect, it, onTestFinished } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { blobFaults } from "../../src/blob/instrumented.ts";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import { jsonLine, prettyLine } from "../../src/logging/configure.ts";
import { FaultBurst } from "../../src/logging/faults.ts";
import { logger } from "../../src/logging/logger.ts";
import { ConfigError, loadConfig } from "../../src/runtime/config.ts";
import { wire } from "../../src/runtime/wire.ts";
import { cacheFaults } from "../../src/service/cache-guard.ts";
import { closedPort, http, useCluster } from "../support/cluster.ts";
import { FaultyBlobStore } from "../support/faulty-blob-store.ts";
import { useTestApps } from "../support/in-process.ts";
import { captureLogs, jsonLines, type LogRecordJson } from "../support/logs.ts";
import { waitFor } from "../support/wait.ts";

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const PROBES = ["/healthz", "/livez", "/readyz"];

describe("Node server process: JSON lines on stdout", () => {
  const cluster = useCluster("all");

  it("the request id of a response is in the JSON access line of that request", async () => {
    const server = await cluster.start({ DATA_DIR: cluster.tempDir("artifacts-logs-") });
    const listening = jsonLines(server.output()).find((r) => /listening on http:\/\//.test(r.msg));
    expect(listening, server.output()).toMatchObject({ level: "info", logger: "thread-artifacts.lifecycle" });
    expect(listening?.time).toMatch(ISO_TIME);

    const created = await http(server.url, "POST", "/v1/threads/logged/artifacts", { artifactType: "n", payload: 1 }, {
      "x-request-id": "from-the-caller-1",
    });
    expect(created.status).toBe(201);
    const read = await http(server.url, "GET", "/v1/threads/logged");
    const generated = read.headers.get("x-request-id") as string;
    expect(generated).toMatch(UUID);
    const missing = await http(server.url, "GET", "/v1/threads/not-there", undefined, { "x-request-id": "bad id!" });
    expect(missing.status).toBe(404);
    const replaced = missing.json.requestId as string;
    expect(replaced).toMatch(UUID);
    expect(missing.headers.get("x-request-id")).toBe(replaced);

    const lineOf = (requestId: string) =>
      waitFor(
        `the access line of ${requestId}`,
        () => jsonLines(server.output()).find((r) => r.requestId === requestId && r.msg === "request"),
      );
    const [createLine, readLine, missingLine] = [
      await lineOf("from-the-caller-1"),
      await lineOf(generated),
      await lineOf(replaced),
    ];
    expect(createLine).toEqual({
      time: expect.stringMatching(ISO_TIME),
      level: "info",
      msg: "request",
      requestId: "from-the-caller-1",
      method: "POST",
      route: "/v1/threads/:threadId/artifacts",
      status: 201,
      durationMs: expect.any(Number),
      tenant: "local",
      logger: "thread-artifacts.http",
    });
    expect(readLine).toMatchObject({ method: "GET", route: "/v1/threads/:threadId", status: 200, tenant: "local" });
    expect(missingLine).toMatchObject({ route: "/v1/threads/:threadId", status: 404 });
    // One access line per request.
    const access = jsonLines(server.output()).filter((r) => r.msg === "request");
    expect(access.filter((r) => r.requestId === "from-the-caller-1")).toHaveLength(1);
  });

  it("without a tracer registered, a caller's traceparent still puts its trace id on the request's lines", async () => {
    const server = await cluster.start({ DATA_DIR: cluster.tempDir("artifacts-logs-") });
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const traced = await http(server.url, "GET", "/v1/threads/untraced", undefined, {
      "x-request-id": "with-a-traceparent",
      traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
    });
    expect(traced.status).toBe(404);
    const bad = await http(server.url, "GET", "/v1/threads/untraced", undefined, {
      "x-request-id": "with-a-bad-traceparent",
      traceparent: "00-not-a-trace",
    });
    expect(bad.status).toBe(404);
    const lineOf = (requestId: string) =>
      waitFor(
        `the access line of ${requestId}`,
        () => jsonLines(server.output()).find((r) => r.requestId === requestId && r.msg === "request"),
      );
    expect((await lineOf("with-a-traceparent")).traceId).toBe(traceId);
    expect((await lineOf("with-a-bad-traceparent")).traceId).toBeUndefined();
  });

  it("probes are not logged per request", async () => {
    const server = await cluster.start({ DATA_DIR: cluster.tempDir("artifacts-logs-") });
    for (const path of PROBES) {
      expect((await http(server.url, "GET", path)).status, path).toBe(200);
      expect((await fetch(`${server.url}${path}`, { method: "HEAD" })).status, path).toBe(200);
    }
    // Lines come out in order: once the line of a later request is there, a probe's would be too.
    const after = await http(server.url, "GET", "/v1/threads", undefined, { "x-request-id": "after-the-probes" });
    expect(after.status).toBe(200);
    await waitFor(
      "the later request's line",
      () => jsonLines(server.output()).some((r) => r.requestId === "after-the-probes"),
    );
    const logged = jsonLines(server.output()).filter((r) => r.msg === "request").map((r) => r.route);
    expect(logged).toEqual(["/v1/threads"]);
  });

  it("LOG_LEVEL=error silences info lines: no access lines, only the start and shutdown lines", async () => {
    const server = await cluster.start({ DATA_DIR: cluster.tempDir("artifacts-logs-"), LOG_LEVEL: "error" });
    const created = await http(server.url, "POST", "/v1/threads/quiet/artifacts", { artifactType: "n", payload: 1 });
    expect(created.status).toBe(201);
    expect((await http(server.url, "GET", "/v1/threads/nothing-here")).status).toBe(404);
    // Everything it wrote is in once it has exited.
    await server.stop();
    const records = jsonLines(server.output());
    expect(records.filter((r) => r.msg === "request")).toEqual([]);
    const notErrors = records.filter((r) => r.level !== "error");
    expect(notErrors.map((r) => r.logger)).toEqual(["thread-artifacts.lifecycle", "thread-artifacts.lifecycle"]);
    expect(notErrors.map((r) => r.msg)).toEqual([
      expect.stringMatching(/^thread-artifacts listening on http:\/\//),
      "SIGTERM: shutting down; draining",
    ]);
  });
});

describe("logs in process", () => {
  const app = useTestApps();

  it("one access line per request, with the route template; 401s without a tenant, unknown routes without a route", async () => {
    const logs = captureLogs("info");
    const a = app({ env: { AUTH_TOKENS: "tok-logs:tenant-logs" } });
    const auth = { authorization: "Bearer tok-logs" };
    expect((await a.request("POST", "/v1/threads/t1/artifacts", { artifactType: "n", payload: 1 }, auth)).status).toBe(
      201,
    );
    expect((await a.request("GET", "/v1/threads/t1", undefined, auth)).status).toBe(200);
    const refused = await a.request("GET", "/v1/threads/t1?access_token=secret-in-query");
    expect(refused.status).toBe(401);
    expect((await a.request("GET", "/v1/threads/t1/artifacts/secret-in-path", undefined, auth)).status).toBe(400);
    expect((await a.request("GET", "/nope", undefined, auth)).status).toBe(404);
    for (const path of PROBES) await a.request("GET", path);
    const lines = logs.accessLines();
    expect(lines.map((r) => [r.method, r.route, r.status, r.tenant])).toEqual([
      ["POST", "/v1/threads/:threadId/artifacts", 201, "tenant-logs"],
      ["GET", "/v1/threads/:threadId", 200, "tenant-logs"],
      ["GET", "/v1/threads/:threadId", 401, undefined],
      ["GET", "/v1/threads/:threadId/artifacts/:artifactId", 400, "tenant-logs"],
      ["GET", null, 404, "tenant-logs"],
    ]);
    for (const line of lines) {
      expect(line.requestId).toMatch(UUID);
      expect(line.durationMs).toBeGreaterThanOrEqual(0);
    }
    // Never the raw path nor its query (an access_token may travel there).
    expect(logs.lines.join("\n")).not.toMatch(/secret-in-(query|path)/);
  });

  it("the request id is on every line of its request: a cache failure's warning too", async () => {
    const logs = captureLogs("debug");
    const a = app({ libsqlUrl: `http://127.0.0.1:${await closedPort()}` });
    const created = await a.request("POST", "/v1/threads/cacheless/artifacts", { artifactType: "n", payload: 1 }, {
      "x-request-id": "with-the-cache-down",
    });
    expect(created.status).toBe(201);
    const ofRequest = logs.records().filter((r) => r.requestId === "with-the-cache-down");
    const warning = ofRequest.find((r) => /^cache \w+ failed; using the rollout$/.test(r.msg));
    expect(warning, JSON.stringify(logs.records(), null, 1)).toMatchObject({
      level: "warn",
      store: "libsql",
      logger: "thread-artifacts.cache",
    });
    expect(warning?.error).toMatch(/CacheUnavailableError/);
    expect(ofRequest.at(-1)).toMatchObject({ msg: "request", status: 201 });
    // The cache stays down: later requests add no warning (once per burst, not per request).
    for (let i = 0; i < 3; i++) expect((await a.request("GET", "/v1/threads/cacheless")).status).toBe(200);
    expect(logs.records().filter((r) => r.level === "warn" || r.level === "error")).toHaveLength(1);
    // Nothing of the request was logged without its id.
    expect(logs.records().filter((r) => r.requestId === undefined && r.logger !== "thread-artifacts.lifecycle"))
      .toEqual([]);
  });

  it("LOG_LEVEL=error: no info or warn records at all", async () => {
    const logs = captureLogs("error");
    const a = app({ libsqlUrl: `http://127.0.0.1:${await closedPort()}` });
    expect((await a.request("POST", "/v1/threads/q/artifacts", { artifactType: "n", payload: 1 })).status).toBe(201);
    expect((await a.request("GET", "/v1/threads/q")).status).toBe(200);
    expect(logs.records()).toEqual([]);
  });

  it("LOG_LEVEL and LOG_FORMAT are validated", () => {
    expect(loadConfig({}).logLevel).toBe("info");
    expect(loadConfig({}).logFormat).toBeUndefined();
    expect(loadConfig({ LOG_LEVEL: "WARN", LOG_FORMAT: "pretty" })).toMatchObject({
      logLevel: "warn",
      logFormat: "pretty",
    });
    expect(() => loadConfig({ LOG_LEVEL: "verbose" })).toThrow(ConfigError);
    expect(() => loadConfig({ LOG_LEVEL: "verbose" })).toThrow(/LOG_LEVEL must be one of debug, info, warn, error/);
    expect(() => loadConfig({ LOG_FORMAT: "xml" })).toThrow(/LOG_FORMAT must be one of json, pretty/);
  });

  it("a rollout store that is down is logged once for the burst, not once per failed request", async () => {
    const logs = captureLogs("debug");
    const store = new FaultyBlobStore(new MemoryBlobStore(), 7, { down: true });
    const a = app({ blobStore: store });
    for (let i = 0; i < 5; i++) {
      const failed = await a.request("POST", `/v1/threads/down-${i}/artifacts`, { artifactType: "n", payload: i });
      expect(failed.status).toBe(503);
    }
    const records = logs.records();
    const loud = records.filter((r) => r.level === "warn" || r.level === "error");
    expect(loud).toHaveLength(1);
    expect(loud[0]).toMatchObject({ level: "warn", store: "blob", logger: "thread-artifacts.rollout" });
    expect(loud[0]?.operation).toMatch(/^(get|putIfAbsent|put|exists|list|delete)$/);
    expect(loud[0]?.error).toMatch(/^InjectedFault: injected failure/);
    expect(logs.accessLines().map((r) => r.status)).toEqual([503, 503, 503, 503, 503]);
    // Each failed request still says at debug what failed it.
    expect(records.filter((r) => r.msg === "request failed on a store fault")).toHaveLength(5);
  });

  it("wired per request (Workers), the stores' fault logs are the isolate's: one warning, not one per request", async () => {
    const logs = captureLogs("info");
    const dir = mkdtempSync(join(tmpdir(), "artifacts-logs-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const config = loadConfig({ DATA_DIR: dir, LIBSQL_URL: `http://127.0.0.1:${await closedPort()}` });
    const store = new FaultyBlobStore(new MemoryBlobStore(), 11, { down: true });
    const storeFaults = { blob: blobFaults(), libsql: cacheFaults() };
    for (let i = 0; i < 3; i++) {
      // A request's own wiring, as workerFetch makes it.
      const { app, cache } = wire({
        config,
        blobStore: store,
        connectLibsql: () => createClient({ url: config.libsqlUrl }),
        storeFaults,
      });
      const response = await app.request(`/v1/threads/w-${i}`);
      expect(response.status).toBe(503);
      await response.body?.cancel();
      cache.close();
    }
    const loud = logs.records().filter((r) => r.level === "warn" || r.level === "error");
    expect(loud.map((r) => r.store).sort()).toEqual(["blob", "libsql"]);
  });

  it("FaultBurst: a burst is logged when it starts and when the store has answered after a quiet spell", () => {
    const logs = captureLogs("debug");
    let now = 0;
    const burst = new FaultBurst({ store: "blob", log: logger("rollout"), quietMs: 5000, now: () => now });
    const fail = (at: number) => {
      now = at;
      burst.failed("get", new Error(`down at ${at}`));
    };
    const succeed = (at: number) => {
      now = at;
      burst.succeeded();
    };
    succeed(0);
    fail(1000);
    fail(2000);
    succeed(3000); // too soon: a flapping store is one burst
    fail(4000);
    succeed(9000); // quiet for 5 s: the burst ends
    succeed(9500);
    fail(10_000); // a new burst
    fail(30_000); // a new burst after a quiet spell, even without a success in between
    expect(logs.records().map((r) => [r.level, r.msg, r.error ?? r.failures])).toEqual([
      [
        "warn",
        "blob store call failed; further failures are counted, not logged, until it recovers",
        "Error: down at 1000",
      ],
      ["info", "blob store answers again", 3],
      [
        "warn",
        "blob store call failed; further failures are counted, not logged, until it recovers",
        "Error: down at 10000",
      ],
      [
        "warn",
        "blob store call failed; further failures are counted, not logged, until it recovers",
        "Error: down at 30000",
      ],
    ]);
  });

  it("a line carries the active span's trace id, and none without one", () => {
    const logs = captureLogs("info");
    const manager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(manager);
    try {
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
      const span = trace.wrapSpanContext({ traceId, spanId: "00f067aa0ba902b7", traceFlags: TraceFlags.SAMPLED });
      context.with(trace.setSpan(ROOT_CONTEXT, span), () => logger("test").info("inside a span"));
      logger("test").info("outside");
      expect(logs.records().map((r) => [r.msg, r.traceId])).toEqual([["inside a span", traceId], [
        "outside",
        undefined,
      ]]);
    } finally {
      context.disable();
    }
  });

  it("formats: JSON keys in order, errors as one line; pretty for people", () => {
    const logs = captureLogs("info");
    const error = new Error("outer", { cause: new TypeError("inner\nsecond line") });
    logger("test").warn("it failed: {what}", { what: "the thing", error, requestId: "r-1", n: 2n, nested: { a: [1] } });
    const [line] = logs.lines;
    const record = JSON.parse(line as string) as LogRecordJson;
    expect(Object.keys(record)).toEqual([
      "time",
      "level",
      "msg",
      "requestId",
      "what",
      "error",
      "n",
      "nested",
      "logger",
    ]);
    expect(record).toMatchObject({
      level: "warn",
      msg: "it failed: the thing",
      error: "Error: outer: TypeError: inner",
      n: "2",
      nested: { a: [1] },
      logger: "thread-artifacts.test",
    });
    expect(jsonLine(record)).toBe(line);
    expect(prettyLine(record)).toBe(
      `${record.time} WARN  it failed: the thing requestId=r-1 what="the thing" error="Error: outer: TypeError: inner" n=2 nested={"a":[1]}`,
    );
  });
});
