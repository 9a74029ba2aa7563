/**
 * The Prometheus text exposition read back for tests: samples with their labels, the
 * families' types, and a scrape helper.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  /** `# TYPE` lines: family name → kind. */
  types: Map<string, string>;
  /** The value of the one sample named `name` whose labels include `labels`; undefined if none (throws if several). */
  value(name: string, labels?: Record<string, string>): number | undefined;
}

export function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1] as string, type[2] as string);
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1] as string] = (pair[2] as string).replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) });
  }
  return {
    samples,
    types,
    value(name, wanted = {}) {
      const found = samples.filter((s) =>
        s.name === name && Object.entries(wanted).every(([key, value]) => s.labels[key] === value)
      );
      if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(wanted)}`);
      return found[0]?.value;
    },
  };
}

/** `GET /metrics` of a server, parsed (the status must be 200). */
export async function scrape(baseUrl: string, headers: Record<string, string> = {}): Promise<Exposition> {
  const response = await fetch(`${baseUrl}/metrics`, { headers });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET /metrics answered ${response.status}: ${text}`);
  return parseExposition(text);
}

/** The families API.md requires of every `/metrics`, with their kinds. */
export const REQUIRED_FAMILIES: Record<string, string> = {
  http_server_request_duration_seconds: "histogram",
  http_server_active_requests: "gauge",
  artifacts_commits_total: "counter",
  artifacts_commit_patches: "histogram",
  artifacts_commit_conflicts_total: "counter",
  artifacts_store_request_duration_seconds: "histogram",
  artifacts_sse_streams: "gauge",
  artifacts_sse_events_sent_total: "counter",
  artifacts_cache_up: "gauge",
  artifacts_cache_repairs_total: "counter",
  artifacts_rate_limited_total: "counter",
  artifacts_sse_stalled_total: "counter",
  artifacts_webhook_deliveries_total: "counter",
  artifacts_webhook_delivery_duration_seconds: "histogram",
  artifacts_webhook_retries_total: "counter",
  artifacts_webhook_backlog_events: "gauge",
  artifacts_webhook_oldest_undelivered_seconds: "gauge",
};
