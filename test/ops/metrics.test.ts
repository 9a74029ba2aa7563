/**
 * `GET /metrics` of a real Node server (API.md "Operations"): exact counters after a
 * scripted workload, the stream gauge following a stream open and closed, commit
 * counters that add up to the rollout on disk across two processes (one of which loses a
 * put-if-absent race on purpose), no label carrying an id or a path, scrapes that are not
 * requests, and the METRICS_TOKEN / loopback rules.
 */
import { describe, expect, it } from "vitest";
import { commitFiles, committedSeqs, http, useCluster } from "../support/cluster.ts";
import { parseExposition, REQUIRED_FAMILIES, scrape } from "../support/prometheus.ts";
import type { ServerProcess } from "../support/server-process.ts";
import { SseConnection } from "../support/sse.ts";
import { waitFor } from "../support/wait.ts";

const CREATE_ROUTE = "/v1/threads/:threadId/artifacts";

function create(base: string, threadId: string, n: number, headers: Record<string, string> = {}) {
  return http(base, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "plan", payload: { n } }, headers);
}

describe("GET /metrics on Node", () => {
  const cluster = useCluster();

  it("counts a scripted workload exactly, and follows a stream open and closed", async () => {
    const data = cluster.dataDir();
    const server = await cluster.start({ DATA_DIR: data.dir });
    const N = 7;
    for (let i = 0; i < N; i++) expect((await create(server.url, "metrics-seq", i)).status).toBe(201);
    // A burst on another thread goes in groups: fewer commits than writes, every patch counted.
    const burst = await Promise.all(Array.from({ length: 12 }, (_, i) => create(server.url, "metrics-burst", i)));
    expect(burst.map((r) => r.status)).toEqual(burst.map(() => 201));
    expect((await http(server.url, "GET", "/v1/threads/metrics-seq")).status).toBe(200);
    expect((await http(server.url, "GET", "/v1/threads/metrics-missing")).status).toBe(404);
    expect((await http(server.url, "GET", "/no/such/route")).status).toBe(404);

    let metrics = await scrape(server.url);
    for (const [family, kind] of Object.entries(REQUIRED_FAMILIES)) {
      expect(metrics.types.get(family), family).toBe(kind);
    }
    const count = (route: string, status: string, method = "GET") =>
      metrics.value("http_server_request_duration_seconds_count", {
        http_request_method: method,
        http_route: route,
        http_response_status_code: status,
      });
    expect(count(CREATE_ROUTE, "201", "POST")).toBe(N + 12);
    expect(count("/v1/threads/:threadId", "200")).toBe(1);
    expect(count("/v1/threads/:threadId", "404")).toBe(1);
    // No route matched: the template is empty, never the path.
    expect(count("", "404")).toBe(1);
    // Scrapes are not requests (this is the second; the first is not counted either).
    metrics = await scrape(server.url);
    expect(count("", "404")).toBe(1);
    expect(metrics.samples.filter((s) => s.name === "http_server_request_duration_seconds_count").length).toBe(4);
    expect(metrics.value("http_server_active_requests")).toBe(0);

    // Commits: one per group, every patch in the histogram, no lost race in one process.
    const commits = commitFiles(data.rolloutDir, "metrics-seq").length +
      commitFiles(data.rolloutDir, "metrics-burst").length;
    expect(metrics.value("artifacts_commits_total")).toBe(commits);
    expect(metrics.value("artifacts_commit_patches_count")).toBe(commits);
    expect(metrics.value("artifacts_commit_patches_sum")).toBe(N + 12);
    expect(metrics.value("artifacts_commit_conflicts_total")).toBe(0);
    // Store calls: the rollout's commit puts, all answered; the cache up.
    expect(metrics.value("artifacts_store_request_duration_seconds_count", {
      store: "blob",
      operation: "putIfAbsent",
      outcome: "ok",
    })).toBeGreaterThanOrEqual(commits);
    expect(
      metrics.value("artifacts_store_request_duration_seconds_count", {
        store: "libsql",
        operation: "apply",
        outcome: "ok",
      }),
    )
      .toBe(commits);
    expect(metrics.value("artifacts_cache_up")).toBe(1);

    // One stream: the gauge is 1 once its headers are in, its event is counted, 0 once it is gone.
    expect(metrics.value("artifacts_sse_streams", { kind: "thread" })).toBe(0);
    const stream = await SseConnection.open(`${server.url}/v1/threads/metrics-stream/events`);
    try {
      expect(stream.response.status).toBe(200);
      metrics = await scrape(server.url);
      expect(metrics.value("artifacts_sse_streams", { kind: "thread" })).toBe(1);
      expect(metrics.value("artifacts_sse_streams", { kind: "many" })).toBe(0);
      expect((await create(server.url, "metrics-stream", 0)).status).toBe(201);
      await stream.untilSeq(1);
      metrics = await scrape(server.url);
      expect(metrics.value("artifacts_sse_events_sent_total", { kind: "thread" })).toBe(1);
      // A stream counts as a request until its headers: the GET is in, and no longer active.
      expect(count("/v1/threads/:threadId/events", "200")).toBe(1);
      expect(metrics.value("http_server_active_requests")).toBe(0);
    } finally {
      await stream.close();
    }
    await waitFor(
      "the stream gauge back at 0",
      async () => (await scrape(server.url)).value("artifacts_sse_streams", { kind: "thread" }) === 0,
    );

    // No label holds a thread id or a path, whatever was asked.
    const final = await scrape(server.url);
    const ids = ["metrics-seq", "metrics-burst", "metrics-missing", "metrics-stream", "/no/such/route"];
    const leaks = final.samples.flatMap((s) =>
      Object.values(s.labels).filter((value) =>
        ids.some((id) => value.includes(id)) || /^\/v1\/threads\/[^:]/.test(value)
      )
    );
    expect(leaks).toEqual([]);
  });

  it("adds up to the rollout across two processes, one of which loses a put-if-absent race", async () => {
    const { servers, rolloutDir } = await cluster.shared(2, {}, { warm: false });
    const [a, b] = servers as [ServerProcess, ServerProcess];
    // a remembers the head it wrote (1); b writes seq 2 behind its back; a's next put aims
    // at seq 2, finds it taken (a lost race), catches up and commits seq 3.
    expect((await create(a.url, "race", 1)).status).toBe(201);
    expect((await create(b.url, "race", 2)).status).toBe(201);
    expect((await create(a.url, "race", 3)).status).toBe(201);
    expect(committedSeqs(rolloutDir, "race")).toEqual([1, 2, 3]);

    const [ma, mb] = await Promise.all([scrape(a.url), scrape(b.url)]);
    expect(ma.value("artifacts_commit_conflicts_total")).toBe(1);
    expect(mb.value("artifacts_commit_conflicts_total")).toBe(0);
    expect((ma.value("artifacts_commits_total") ?? 0) + (mb.value("artifacts_commits_total") ?? 0))
      .toBe(commitFiles(rolloutDir, "race").length);
    expect((ma.value("artifacts_commit_patches_sum") ?? 0) + (mb.value("artifacts_commit_patches_sum") ?? 0)).toBe(3);
    expect(ma.value("artifacts_store_request_duration_seconds_count", {
      store: "blob",
      operation: "putIfAbsent",
      outcome: "ok",
    })).toBe(3);
  });

  it("counts every 429 by the limit that refused it, and nothing of what it refused", async () => {
    const data = cluster.dataDir();
    const server = await cluster.start({
      DATA_DIR: data.dir,
      AUTH_TOKENS: "limited-token:limited",
      METRICS_TOKEN: "scrape-secret",
      RATE_LIMIT_WRITES: "1/h",
      RATE_LIMIT_READS: "1/h",
      MAX_STREAMS_PER_TENANT: "1",
    });
    const as = { authorization: "Bearer limited-token" };
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await create(server.url, "limited", i, as)).status);
    expect(statuses).toEqual([201, 201, 429, 429]);
    const reads = [];
    for (let i = 0; i < 3; i++) {
      reads.push((await http(server.url, "GET", "/v1/threads/limited", undefined, as)).status);
    }
    expect(reads).toEqual([200, 200, 429]);
    const metrics = await scrape(server.url, { authorization: "Bearer scrape-secret" });
    expect(metrics.value("artifacts_rate_limited_total", { limit: "writes" })).toBe(2);
    expect(metrics.value("artifacts_rate_limited_total", { limit: "reads" })).toBe(1);
    expect(metrics.value("artifacts_rate_limited_total", { limit: "streams" })).toBe(0);
    expect(metrics.value("http_server_request_duration_seconds_count", {
      http_request_method: "POST",
      http_route: CREATE_ROUTE,
      http_response_status_code: "429",
    })).toBe(2);
    // The refused writes wrote nothing: two commits on disk, two counted.
    expect(committedSeqs(data.rolloutDir, "limited", "limited")).toEqual([1, 2]);
    expect(metrics.value("artifacts_commits_total")).toBe(2);
  });

  it("needs METRICS_TOKEN when it is set, and is a 404 where it may not be open", async () => {
    const data = cluster.dataDir();
    const tokenOnly = await cluster.start({ DATA_DIR: data.dir, METRICS_TOKEN: "scrape-secret" });
    const missing = await fetch(`${tokenOnly.url}/metrics`);
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toBe("Bearer");
    expect(missing.headers.get("content-type")).toBe("application/problem+json");
    expect((await missing.json()).code).toBe("unauthorized");
    expect((await fetch(`${tokenOnly.url}/metrics`, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    const ok = await fetch(`${tokenOnly.url}/metrics`, { headers: { authorization: "Bearer scrape-secret" } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    parseExposition(await ok.text());

    // Authentication configured and no METRICS_TOKEN: not served at all, not even to an API token.
    const authed = await cluster.start({ DATA_DIR: cluster.dataDir().dir, AUTH_TOKENS: "api-token:tenant-a" });
    expect((await fetch(`${authed.url}/metrics`)).status).toBe(404);
    expect((await fetch(`${authed.url}/metrics`, { headers: { authorization: "Bearer api-token" } })).status).toBe(404);

    // Both: the metrics token opens /metrics, an API token does not (nor does it the other way round).
    const both = await cluster.start({
      DATA_DIR: cluster.dataDir().dir,
      AUTH_TOKENS: "api-token:tenant-a",
      METRICS_TOKEN: "scrape-secret",
    });
    expect((await fetch(`${both.url}/metrics`, { headers: { authorization: "Bearer api-token" } })).status).toBe(401);
    expect((await fetch(`${both.url}/metrics`, { headers: { authorization: "Bearer scrape-secret" } })).status).toBe(
      200,
    );
    expect((await http(both.url, "GET", "/v1/threads", undefined, { authorization: "Bearer scrape-secret" })).status)
      .toBe(401);

    // METRICS=off: nothing recorded, nothing served.
    const off = await cluster.start({ DATA_DIR: cluster.dataDir().dir, METRICS: "off" });
    expect((await create(off.url, "off", 1)).status).toBe(201);
    expect((await fetch(`${off.url}/metrics`)).status).toBe(404);
  });
});
