/**
 * What webhooks cost the write path on the Worker (docs/decisions.md "Workers: webhooks"):
 * the same 20 creates on one thread by a tenant with 0 and with N every-thread webhooks,
 * S3 (the rollout and the registry, instead of R2) and libSQL requests counted by a
 * loopback proxy that logs each one's method and path. The sequencer's part (the
 * registry listing per 10 s, the hints: one Durable Object call per commit per following
 * webhook) and the deliverers' (the webhook read per alarm, cursors, the event log) are
 * told apart by their keys. The costs are printed (a measurement); what is asserted is
 * that a tenant without webhooks pays no registry work per commit and that every event
 * reaches every webhook.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { startFaultProxy } from "../support/fault-proxy.ts";
import { startHranaServer } from "../support/hrana-server.ts";
import { S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY, startS3rver } from "../support/s3rver.ts";
import { waitFor } from "../support/wait.ts";
import { WebhookReceiver } from "../support/webhook-receiver.ts";
import { startWorker } from "../support/worker-process.ts";

const N = 5;
const CREATES = 20;

/** S3 requests by what they touch. */
function classify(lines: string[]) {
  const counts = { registryList: 0, subscriptionGet: 0, cursorPut: 0, cursorGet: 0, rollout: 0 };
  for (const line of lines) {
    if (/prefix=webhooks\//.test(line)) counts.registryList++;
    else if (/\/webhooks\/wh_[0-9a-f]+\/cursors\//.test(line)) {
      if (line.startsWith("PUT")) counts.cursorPut++;
      else counts.cursorGet++;
    } else if (/\/webhooks\/wh_[0-9a-f]+\.json/.test(line)) counts.subscriptionGet++;
    else counts.rollout++;
  }
  return counts;
}

it(
  `a tenant without webhooks pays no registry work per commit; with ${N}, every event reaches each (costs printed)`,
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "artifacts-webhooks-cost-"));
    const s3 = await startS3rver();
    const hrana = await startHranaServer({ path: join(dir, "cache.db") });
    const s3Proxy = await startFaultProxy(s3.endpoint);
    const libsqlProxy = await startFaultProxy(hrana.url);
    const to = await WebhookReceiver.start();
    const bucket = await s3.createBucket();
    const worker = await startWorker({
      BLOB_STORE: `s3://${bucket}?endpoint=${encodeURIComponent(s3Proxy.endpoint)}&region=${S3_REGION}`,
      AWS_ACCESS_KEY_ID: S3_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: S3_SECRET_ACCESS_KEY,
      LIBSQL_URL: libsqlProxy.endpoint,
      AUTH_TOKENS: "cost-none:none,cost-many:many",
      WEBHOOK_ALLOW_HTTP_LOOPBACK: "1",
      RATE_LIMIT_WRITES: "0",
      RATE_LIMIT_READS: "0",
    });
    const call = (token: string, method: string, path: string, body?: unknown) =>
      fetch(`${worker.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    const creates = async (token: string, threadId: string, n: number) => {
      for (let i = 0; i < n; i++) {
        const response = await call(token, "POST", `/v1/threads/${threadId}/artifacts`, {
          artifactType: "n",
          payload: { i },
        });
        expect(response.status).toBe(201);
        await response.body?.cancel();
      }
    };
    const measure = async (token: string, threadId: string, settled: (creates: number) => boolean) => {
      // One create first: the sequencer's thread loaded, the subscriptions read.
      await creates(token, threadId, 1);
      await waitFor("the first create settled", () => settled(1));
      const s3Before = s3Proxy.log.length;
      const libsqlBefore = libsqlProxy.log.length;
      const started = performance.now();
      await creates(token, threadId, CREATES);
      const ms = performance.now() - started;
      // Counted until every delivery was acknowledged: cursor writes batched after it are not in the print.
      await waitFor("every create settled", () => settled(1 + CREATES));
      return {
        msPerCreate: ms / CREATES,
        s3: classify(s3Proxy.log.slice(s3Before)),
        libsql: libsqlProxy.log.length - libsqlBefore,
      };
    };
    try {
      const none = await measure("cost-none", "t0", () => true);
      const paths = Array.from({ length: N }, (_, i) => `/cost-${i}`);
      for (const path of paths) {
        const created = await call("cost-many", "POST", "/v1/webhooks", { url: to.url(path) });
        expect(created.status).toBe(201);
        to.secrets.set(path, (await created.json()).webhook.secret);
      }
      const acked = () => paths.reduce((sum, path) => sum + to.acked(path, "t1").length, 0);
      const many = await measure("cost-many", "t1", (n) => acked() >= N * n);
      const expected = N * (CREATES + 1);
      await waitFor("every event delivered to every webhook", () => acked() >= expected);
      const per = (n: number) => (n / CREATES).toFixed(2);
      const line = (name: string, r: typeof none) =>
        `${name}: ${r.msPerCreate.toFixed(1)} ms/create; per create: S3 rollout ${per(r.s3.rollout)}, registry list ${
          per(r.s3.registryList)
        }, subscription gets ${per(r.s3.subscriptionGet)}, cursor puts ${per(r.s3.cursorPut)}, cursor gets ${
          per(r.s3.cursorGet)
        }, libSQL ${per(r.libsql)}`;
      console.log(
        `${line("0 webhooks", none)}\n${
          line(`${N} webhooks`, many)
        }\nDO hints per create: ${N} (one per following webhook); deliveries ${acked()}`,
      );
      expect(to.received.every((r) => r.verified)).toBe(true);
      expect(acked()).toBe(expected);
      // Without webhooks: no subscription read, no cursor, at most the one listing a 10 s window allows.
      expect([none.s3.subscriptionGet, none.s3.cursorPut, none.s3.cursorGet]).toEqual([0, 0, 0]);
      expect(none.s3.registryList).toBeLessThanOrEqual(1);
    } finally {
      await worker.stop();
      await to.close();
      await s3Proxy.close();
      await libsqlProxy.close();
      await hrana.close();
      await s3.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
  120_000,
);
