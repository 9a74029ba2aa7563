/**
 * kill -9 of the process delivering a webhook, in the middle of a delivery: three Node
 * servers with the dispatcher on one data folder, writes to several threads through all
 * of them, and the lease holder killed while the receiver holds one of its requests. Its
 * lease expires, another process takes the webhook over from the durable cursors, and
 * every event reaches the receiver at least once, each thread in seq order (no event sent
 * before the ones before it were acknowledged); what was repeated is counted.
 */
import { describe, expect, it } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import { leaseKey } from "../../src/webhooks/lease.ts";
import { http, useCluster } from "../support/cluster.ts";
import type { ServerProcess } from "../support/server-process.ts";
import { waitFor } from "../support/wait.ts";
import { expectSentInOrder, WebhookReceiver } from "../support/webhook-receiver.ts";

const TENANT = "local";
const THREADS = ["k1", "k2", "k3", "k4"];
const BEFORE = 10;
const AFTER = 5;
/** The receiver's request at which the holder is killed (held unanswered). */
const KILL_AT = 12;

const cluster = useCluster();

describe("webhook delivery across processes", () => {
  it("kill -9 of the lease holder mid-delivery: every event at least once, in order per thread", async () => {
    const data = cluster.dataDir();
    const env = {
      DATA_DIR: data.dir,
      WEBHOOK_ALLOW_HTTP_LOOPBACK: "1",
      WEBHOOK_RETRY_BASE_MS: "50",
      WEBHOOK_SWEEP_MS: "100",
      WEBHOOK_LEASE_MS: "2000",
    };
    // Three real Node servers on one data folder; a lease names its holder by pid.
    const servers = new Map<string, ServerProcess>();
    await Promise.all([0, 1, 2].map(async () => {
      const server = await cluster.start(env);
      servers.set(`node:${server.child.pid}`, server);
    }));
    const alive = () => [...servers.entries()].filter(([, s]) => s.child.exitCode === null && !s.child.signalCode);

    const to = await WebhookReceiver.start();
    try {
      const created = await http([...servers.values()][0]!.url, "POST", "/v1/webhooks", { url: to.url("/k") });
      expect(created.status, created.text).toBe(201);
      const id = created.json.webhook.id as string;
      to.secrets.set("/k", created.json.webhook.secret);

      const store = new FsBlobStore(data.rolloutDir);
      /** The holder's name as the servers map knows it (`node:<pid>`). */
      const holder = async () =>
        String(JSON.parse((await store.get(leaseKey(TENANT, id))) ?? "{}").holder).split(":").slice(0, 2).join(":");
      /** Who was killed, and how many requests had arrived once it was dead. */
      let killed: { name: string; at: number } | null = null;
      let count = 0;
      to.respond = (request) => {
        count++;
        if (count === KILL_AT) {
          // Held unanswered: the holder dies with this delivery in flight.
          void holder().then(async (name) => {
            await servers.get(name)?.kill();
            killed = { name, at: to.received.length };
          });
          return "hang";
        }
        return { status: request.verified ? 200 : 400 };
      };

      // Writes spread over every live server; one that dies under a write is replaced by another.
      let turn = 0;
      const writeOnce = async (threadId: string, i: number) => {
        for (;;) {
          const live = alive();
          const [, server] = live[turn++ % live.length] as [string, ServerProcess];
          try {
            const r = await http(server.url, "POST", `/v1/threads/${threadId}/artifacts`, {
              artifactType: "note",
              payload: { i },
            });
            if (r.status === 201) return;
          } catch {
            // the server died under the write: another one takes it (it may have landed: a new seq then)
          }
        }
      };
      const writeMany = (n: number, from: number) =>
        Promise.all(THREADS.map(async (threadId) => {
          for (let i = 0; i < n; i++) await writeOnce(threadId, from + i);
        }));
      await writeMany(BEFORE, 0);
      const victim = await waitFor("the holder killed", () => killed ?? undefined);
      expect(servers.get(victim.name)?.child.signalCode).toBe("SIGKILL");
      await writeMany(AFTER, BEFORE);

      // Every event of every thread acknowledged at least once.
      const survivor = alive()[0]?.[1] as ServerProcess;
      const heads = new Map<string, number>();
      for (const threadId of THREADS) {
        const r = await http(survivor.url, "GET", `/v1/threads/${threadId}`);
        expect(r.status, r.text).toBe(200);
        heads.set(threadId, r.json.thread.rolloutSeq);
      }
      await waitFor(
        "every event acknowledged",
        () =>
          THREADS.every((threadId) => {
            const acked = new Set(to.acked("/k", threadId));
            for (let seq = 1; seq <= (heads.get(threadId) ?? 0); seq++) if (!acked.has(seq)) return false;
            return true;
          }),
        { timeoutMs: 45_000 },
      );
      expect(await holder()).not.toBe(victim.name);

      let repeats = 0;
      for (const threadId of THREADS) {
        const requests = to.to("/k", threadId);
        const head = heads.get(threadId) ?? 0;
        expectSentInOrder(requests, Array.from({ length: head }, (_, i) => i + 1));
        expect(requests.every((r) => r.verified)).toBe(true);
        // A repeat is of an event the killed process had in hand: first sent before the kill.
        const firstAt = new Map<number, number>();
        for (const request of requests) {
          const index = to.received.indexOf(request);
          if (!firstAt.has(request.seq)) firstAt.set(request.seq, index);
          else {
            repeats++;
            expect(firstAt.get(request.seq), `seq ${request.seq} of ${threadId} repeated`).toBeLessThan(victim.at);
          }
        }
      }
      const events = [...heads.values()].reduce((a, b) => a + b, 0);
      // The held request is always repeated; the rest is what the dead holder acknowledged but had not written.
      expect(repeats).toBeGreaterThanOrEqual(1);
      console.info(`webhook kill -9: ${events} events, ${to.received.length} requests, ${repeats} repeated`);
    } finally {
      await to.close();
    }
  });
});
