/**
 * What each operation costs the Worker's request in subrequests (docs/decisions.md
 * "Workers: subrequests per operation"): the bundle in workerd under the subrequest
 * counter (test/support/worker-subrequests.ts), its rollout on S3 and its cache on
 * libSQL over HTTP, the tenant's limits counted in its TenantLimiter object (as deployed
 * by default). Every single-thread operation stays within 5 subrequests (Workers Free
 * allows 50 per request, Paid 10,000); a many-threads stream costs one WebSocket per
 * thread and ONE libSQL query for the catch-up of all of them; a stream of more threads
 * than MAX_STREAM_THREADS is refused before anything is read. The counts are printed.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FaultProxy, startFaultProxy } from "../support/fault-proxy.ts";
import { type HranaServer, startHranaServer } from "../support/hrana-server.ts";
import {
  S3_ACCESS_KEY_ID,
  S3_REGION,
  S3_SECRET_ACCESS_KEY,
  type S3rverHarness,
  startS3rver,
} from "../support/s3rver.ts";
import { waitFor } from "../support/wait.ts";
import { WebhookReceiver } from "../support/webhook-receiver.ts";
import { startWorker, type WorkerServer } from "../support/worker-process.ts";
import { measureOperationCosts, type ObjectRow, type OperationCost } from "../support/worker-subrequests.ts";

const TOKEN = "subrequests-token";
const MANY = 10;
const MAX_STREAM_THREADS = 12;

describe("Workers: subrequests per operation", () => {
  let dir: string;
  let s3: S3rverHarness;
  let hrana: HranaServer;
  let s3Proxy: FaultProxy;
  let libsqlProxy: FaultProxy;
  let receiver: WebhookReceiver;
  let worker: WorkerServer;
  let rows: OperationCost[];
  let delivery: ObjectRow | null;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "artifacts-subrequests-"));
    s3 = await startS3rver();
    hrana = await startHranaServer({ path: join(dir, "cache.db") });
    // Loopback proxies: their hosts tell S3 requests from libSQL ones.
    s3Proxy = await startFaultProxy(s3.endpoint);
    libsqlProxy = await startFaultProxy(hrana.url);
    receiver = await WebhookReceiver.start();
    const bucket = await s3.createBucket();
    worker = await startWorker({
      BLOB_STORE: `s3://${bucket}?endpoint=${encodeURIComponent(s3Proxy.endpoint)}&region=${S3_REGION}`,
      AWS_ACCESS_KEY_ID: S3_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: S3_SECRET_ACCESS_KEY,
      LIBSQL_URL: libsqlProxy.endpoint,
      AUTH_TOKENS: `${TOKEN}:acme`,
      WEBHOOK_ALLOW_HTTP_LOOPBACK: "1",
      MAX_STREAM_THREADS: String(MAX_STREAM_THREADS),
      // The defaults' kind (a rate and a stream cap, counted in the tenant's object), never reached here.
      RATE_LIMIT_WRITES: "1000/s",
      RATE_LIMIT_READS: "1000/s",
      MAX_STREAMS_PER_TENANT: "100",
    }, { countSubrequests: true });
    const hostOf = (url: string) => new URL(url).host;
    ({ rows, delivery } = await measureOperationCosts({
      base: worker.url,
      token: TOKEN,
      hosts: { s3: hostOf(s3Proxy.endpoint), libsql: hostOf(libsqlProxy.endpoint) },
      manyThreads: MANY,
      webhookUrl: receiver.url("/hook"),
      webhookCreated: (secret) => receiver.secrets.set("/hook", secret),
      webhookDelivered: async (n) => {
        await waitFor(`${n} deliveries`, () => receiver.received.filter((r) => r.status === 200).length >= n);
      },
    }));
    const kinds = [...new Set(rows.flatMap((r) => Object.keys(r.subrequests)))].sort();
    console.log(
      [
        `| operation | ${kinds.join(" | ")} | total |`,
        ...rows.map((r) => `| ${r.operation} | ${kinds.map((k) => r.subrequests[k] ?? 0).join(" | ")} | ${r.total} |`),
        delivery
          ? `webhook delivery (deliverer's alarm, per delivery): ${
            JSON.stringify(delivery.subrequestsPer)
          }, total ${delivery.totalPer}`
          : "",
      ].join("\n"),
    );
  }, 180_000);

  afterAll(async () => {
    await worker?.stop();
    await receiver?.close();
    await s3Proxy?.close();
    await libsqlProxy?.close();
    await hrana?.close();
    await s3?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("every single-thread operation takes at most 5 subrequests of the Worker's request", () => {
    for (const row of rows.filter((r) => r.scope === "single")) {
      expect(row.total, `${row.operation}: ${row.lines.join(", ")}`).toBeLessThanOrEqual(5);
    }
  });

  it("a history read lists twice (the compaction objects and life marker in one listing, then the commits) and gets the tail's commits", () => {
    const history = rows.filter((r) => r.scope === "history");
    expect(history.map((r) => r.operation)).toEqual(["read as of a seq (atSeq)", "artifact versions"]);
    for (const row of history) {
      const s3 = row.lines.filter((line) => line.startsWith("fetch GET"));
      const listings = s3.filter((line) => !line.includes("/tenants/"));
      const commits = s3.filter((line) => /\/commits\/\d{12}\.json$/.test(line));
      expect(listings, `${row.operation}: ${row.lines.join(", ")}`).toHaveLength(2);
      expect(row.subrequests, `${row.operation}: ${row.lines.join(", ")}`).toEqual({
        S3: 2 + commits.length,
        TENANT_LIMITER: 1,
      });
    }
    // As of seq 2: the two commits up to it (5 in all); every version: the thread's three (6).
    expect(history.map((r) => r.total)).toEqual([5, 6]);
  });

  it("a create is the sequencer's call and the tenant's count, nothing else", () => {
    const create = rows.find((r) => r.operation === "create");
    expect(create?.subrequests).toEqual({ SEQUENCER: 1, TENANT_LIMITER: 1 });
  });

  it(`a stream of ${MANY} threads catches them all up in one libSQL query, with one link per thread`, () => {
    const many = rows.find((r) => r.operation.startsWith(`stream, ${MANY} threads`));
    expect(many?.subrequests.libSQL).toBe(1);
    expect(many?.subrequests.SEQUENCER).toBe(MANY);
    expect(many?.subrequests.S3 ?? 0).toBe(0);
  });

  it("delivers webhooks from the deliverer's own invocations", () => {
    expect(delivery?.totalPer).toBeGreaterThan(0);
  });

  it(`refuses a stream of more than MAX_STREAM_THREADS (${MAX_STREAM_THREADS}) threads before reading anything`, async () => {
    const threads = Array.from({ length: MAX_STREAM_THREADS + 1 }, (_, i) => `over-${i}`).join(",");
    const response = await fetch(`${worker.url}/v1/events?threads=${threads}`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(response.status).toBe(400);
    expect((await response.json()).detail).toContain(`at most ${MAX_STREAM_THREADS} threads`);
  });
});
