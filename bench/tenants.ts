/**
 * One tenant cannot slow the others (API.md "Rate limits"): tenant B writes 5 creates a
 * second on its own, then while tenant A floods with 16 connections at 10× its write
 * limit; and, for the before, the same flood against a server with no limits. B's
 * latencies are taken in this process (open loop: one create every 200 ms whatever the
 * answers do), A's load comes from the load process (autocannon at a fixed rate).
 */
import type { HttpResult, HttpRun } from "./load/http.ts";
import type { ServerProcess } from "./lib/process.ts";
import { summarize } from "./lib/stats.ts";

export interface TenantsParams {
  durationS: number;
  /** A's write limit (per second); A sends 10× that. */
  limitPerS: number;
  connections: number;
  body: string;
}

export interface TenantsRow {
  phase: string;
  b: { p50: number; p99: number; ok: number; failed: number; statuses: Record<string, number> };
  a?: { acceptedPerS: number; refused: number; serverErrors: number; sentPerS: number };
}

export interface TenantsDeps {
  withOurs: <T>(name: string, env: Record<string, string>, body: (server: ServerProcess) => Promise<T>) => Promise<T>;
  /** Runs A's load in the load process (resolves when it is done). */
  flood: (server: ServerProcess, run: HttpRun) => Promise<HttpResult>;
  log: (message: string) => void;
}

const TOKEN_A = "bench-tenant-a";
const TOKEN_B = "bench-tenant-b";

/** B: one create every 200 ms for `durationS`, each timed from its send to its answer. */
async function tenantB(baseUrl: string, durationS: number, body: string): Promise<TenantsRow["b"]> {
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  const sends: Promise<void>[] = [];
  const start = performance.now();
  const count = Math.round(durationS * 5);
  for (let i = 0; i < count; i++) {
    const due = start + i * 200;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    sends.push((async () => {
      const t0 = performance.now();
      try {
        const response = await fetch(`${baseUrl}/v1/threads/b${i % 8}/artifacts`, {
          method: "POST",
          headers: { authorization: `Bearer ${TOKEN_B}`, "content-type": "application/json" },
          body,
        });
        await response.arrayBuffer();
        statuses[response.status] = (statuses[response.status] ?? 0) + 1;
        if (response.status === 201) latencies.push(performance.now() - t0);
      } catch {
        statuses.error = (statuses.error ?? 0) + 1;
      }
    })());
  }
  await Promise.all(sends);
  const { p50, p99 } = summarize(latencies);
  return { p50, p99, ok: latencies.length, failed: count - latencies.length, statuses };
}

export async function benchTenants(params: TenantsParams, deps: TenantsDeps): Promise<TenantsRow[]> {
  const env = (limit: string) => ({
    AUTH_TOKENS: `${TOKEN_A}:a,${TOKEN_B}:b`,
    RATE_LIMIT_WRITES: limit,
    MAX_ARTIFACTS_PER_THREAD: "1000000",
  });
  const floodRun: HttpRun = {
    name: "tenant A flood",
    method: "POST",
    path: "/v1/threads/{thread}/artifacts",
    threads: 64,
    threadPrefix: "a",
    body: params.body,
    headers: { authorization: `Bearer ${TOKEN_A}` },
    connections: params.connections,
    durationS: params.durationS,
    warmupS: 0,
    rate: params.limitPerS * 10,
  };
  const underFlood = async (server: ServerProcess, phase: string): Promise<TenantsRow> => {
    deps.log(`tenants: ${phase}`);
    const [a, b] = await Promise.all([
      deps.flood(server, floodRun),
      tenantB(server.url, params.durationS, params.body),
    ]);
    const refused = a.statuses["429"] ?? 0;
    const serverErrors = Object.entries(a.statuses).filter(([s]) => Number(s) >= 500).reduce((n, [, c]) => n + c, 0);
    const sent = Object.values(a.statuses).reduce((n, c) => n + c, 0);
    return {
      phase,
      b,
      a: { acceptedPerS: a.ok / a.durationS, refused, serverErrors, sentPerS: sent / a.durationS },
    };
  };
  const rows: TenantsRow[] = [];
  await deps.withOurs("tenants (limited)", env(`${params.limitPerS}/s`), async (server) => {
    // Warm the server and B's threads, then B alone, then B beside A's flood.
    await tenantB(server.url, 2, params.body);
    deps.log("tenants: B alone");
    rows.push({ phase: "B alone (5 creates/s)", b: await tenantB(server.url, params.durationS, params.body) });
    rows.push(
      await underFlood(server, `B while A floods at ${params.limitPerS * 10}/s (A's limit ${params.limitPerS}/s)`),
    );
  });
  await deps.withOurs("tenants (no limits)", env("0"), async (server) => {
    await tenantB(server.url, 2, params.body);
    rows.push(await underFlood(server, `before: the same flood, no limits`));
  });
  return rows;
}

const f = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "–");

/** The report's section and its goals (API.md "Rate limits"; the numbers). */
export function tenantsReport(rows: readonly TenantsRow[], params: TenantsParams) {
  const lines = [
    `## one tenant cannot slow the others (${params.durationS} s per phase)`,
    "",
    `Tenant B writes 5 creates/s (open loop); tenant A floods with ${params.connections} connections at ` +
    `${params.limitPerS * 10} creates/s, 10× its write limit of ${params.limitPerS}/s (burst ${
      params.limitPerS * 2
    }). B's latencies are its 201s.`,
    "",
    "| phase | B p50 ms | B p99 ms | B 201s | B other | A sent/s | A accepted/s | A 429s | A 5xx |",
    "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
  ];
  for (const row of rows) {
    const other = Object.entries(row.b.statuses).filter(([s]) => s !== "201").map(([s, n]) => `${s}×${n}`).join(", ");
    lines.push(
      `| ${row.phase} | ${f(row.b.p50)} | ${f(row.b.p99)} | ${row.b.ok} | ${other || "–"} | ${
        row.a ? f(row.a.sentPerS, 0) : "–"
      } | ${row.a ? f(row.a.acceptedPerS, 1) : "–"} | ${row.a?.refused ?? "–"} | ${row.a?.serverErrors ?? "–"} |`,
    );
  }
  lines.push("");
  const goals: { goal: string; measured: string; met: boolean }[] = [];
  const [alone, limited] = rows;
  if (alone && limited?.a) {
    goals.push({
      goal: "tenants: B's p50 beside A's flood ≤ 1.5× alone + 5 ms",
      measured: `${f(limited.b.p50)} ms vs ${f(alone.b.p50)} ms alone`,
      met: limited.b.p50 <= 1.5 * alone.b.p50 + 5,
    });
    goals.push({
      goal: "tenants: B's p99 beside A's flood ≤ 2× alone + 20 ms",
      measured: `${f(limited.b.p99)} ms vs ${f(alone.b.p99)} ms alone`,
      met: limited.b.p99 <= 2 * alone.b.p99 + 20,
    });
    // The bucket admits the rate plus one burst over the run.
    const allowed = params.limitPerS + (params.limitPerS * 2) / params.durationS;
    goals.push({
      goal: "tenants: A's accepted rate ≤ its limit (+ one burst over the run), 0 5xx, every B create 201",
      measured: `${f(limited.a.acceptedPerS)}/s (limit ${params.limitPerS}/s, ≤ ${f(allowed)}/s with the burst); ${
        limited.a.serverErrors + (limited.b.statuses["503"] ?? 0)
      } 5xx; B ${limited.b.ok}/${limited.b.ok + limited.b.failed}`,
      met: limited.a.acceptedPerS <= allowed * 1.02 && limited.a.serverErrors === 0 && limited.b.failed === 0,
    });
  }
  return { lines, goals };
}
