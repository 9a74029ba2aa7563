/**
 * docs/dashboard.json (the Grafana dashboard the README points operators to) queries only
 * metrics the server exposes: every metric name in its PromQL is a family of a real Node
 * server's `GET /metrics` (a histogram's `_bucket`, `_count` and `_sum` series included).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { useCluster } from "../support/cluster.ts";

interface Dashboard {
  panels: { title: string; targets: { expr: string }[] }[];
}

const dashboard = JSON.parse(
  readFileSync(new URL("../../docs/dashboard.json", import.meta.url), "utf8"),
) as Dashboard;

/** The metric names a PromQL expression reads (ours all start with these prefixes). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b((?:http_server|artifacts)_[a-z_]+)\b/g)].map((m) => m[1] as string);
}

/** `# TYPE name kind` lines of an exposition: family name → kind. */
function families(exposition: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const match of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(match[1] as string, match[2] as string);
  return types;
}

/** Whether `name` is a series of one of the families (a histogram's parts by their suffix). */
function exposed(name: string, types: Map<string, string>): boolean {
  if (types.has(name)) return types.get(name) !== "histogram";
  const histogram = /^(.*)_(bucket|count|sum)$/.exec(name);
  return histogram !== null && types.get(histogram[1] as string) === "histogram";
}

describe("the Grafana dashboard", () => {
  const cluster = useCluster();

  it("queries only metrics that GET /metrics exposes, and covers every panel the README names", async () => {
    const { servers: [server] } = await cluster.shared(1);
    const metrics = await fetch(`${server.url}/metrics`);
    expect(metrics.status).toBe(200);
    const types = families(await metrics.text());
    const used = new Set(dashboard.panels.flatMap((panel) => panel.targets.flatMap((t) => metricNames(t.expr))));
    expect(used.size).toBeGreaterThan(10);
    const missing = [...used].filter((name) => !exposed(name, types));
    expect(missing).toEqual([]);
    // Request rate, errors and latency by route; group sizes and conflicts; store latency; streams; cache.
    for (
      const family of [
        "http_server_request_duration_seconds",
        "artifacts_commit_patches",
        "artifacts_commit_conflicts_total",
        "artifacts_store_request_duration_seconds",
        "artifacts_sse_streams",
        "artifacts_cache_up",
      ]
    ) {
      expect([...used].some((name) => name === family || name.startsWith(`${family}_`)), family).toBe(true);
    }
  });
});
