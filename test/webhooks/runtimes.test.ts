/**
 * The webhook routes as the Node server and `deno task serve` wire them (each with its
 * own resolver: getaddrinfo on Node, Deno.resolveDns on Deno): a subscription is created,
 * SSRF refusals hold, a name that cannot resolve is refused, and the subscription is still
 * there after a restart over the same data folder, and the server delivers to a receiver
 * on loopback (verified with standardwebhooks). URLs are literal addresses or names
 * under `.invalid` (RFC 6761: never resolves), so no test depends on the network.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type ServerProcess, startDenoServer, startServer } from "../support/server-process.ts";
import { WebhookReceiver } from "../support/webhook-receiver.ts";
import { waitFor } from "../support/wait.ts";

const RUNTIMES: Array<[string, (env: Record<string, string>) => Promise<ServerProcess>]> = [
  ["Node server", startServer],
  ["Deno (deno task serve)", startDenoServer],
];

describe.each(RUNTIMES)("webhooks on the %s", (_name, start) => {
  it("creates, refuses private and unresolvable hosts, and keeps subscriptions across a restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "artifacts-webhooks-runtime-"));
    const env = { DATA_DIR: dir, WEBHOOK_ALLOW_HTTP_LOOPBACK: "1" };
    let server = await start(env);
    try {
      const post = (body: unknown) =>
        fetch(`${server.url}/v1/webhooks`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        });
      const created = await post({ url: "https://93.184.215.14/hook", threads: ["t1"] });
      expect(created.status).toBe(201);
      const webhook = (await created.json()).webhook;
      expect(webhook.secret).toMatch(/^whsec_/);
      const local = await post({ url: "http://127.0.0.1:9/hook" });
      expect(local.status).toBe(201);

      for (
        const [url, detail] of [
          ["https://10.0.0.1/", /private address/],
          ["https://169.254.169.254/", /metadata address/],
          ["https://[fd00::1]/", /unique-local address/],
          ["http://93.184.215.14/", /https/],
          ["https://hooks.example.invalid/", /does not resolve/],
        ] as const
      ) {
        const refused = await post({ url });
        expect(refused.status, url).toBe(400);
        expect((await refused.json()).detail, url).toMatch(detail);
      }

      await server.stop();
      server = await start(env);
      const read = await fetch(`${server.url}/v1/webhooks/${webhook.id}`);
      expect(read.status).toBe(200);
      const { secret: _secret, ...view } = webhook;
      expect((await read.json()).webhook).toEqual(view);
      const list = await (await fetch(`${server.url}/v1/webhooks`)).json();
      expect(list.webhooks).toHaveLength(2);

      // The server delivers: a receiver on loopback gets each event of its thread, signed, in order.
      const receiver = await WebhookReceiver.start();
      try {
        const hook = await post({ url: receiver.url("/r"), threads: ["delivered"] });
        expect(hook.status).toBe(201);
        receiver.secrets.set("/r", (await hook.json()).webhook.secret);
        for (let i = 0; i < 3; i++) {
          const created = await fetch(`${server.url}/v1/threads/delivered/artifacts`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ artifactType: "n", payload: i }),
          });
          expect(created.status).toBe(201);
        }
        await waitFor("three deliveries", () => receiver.to("/r", "delivered").length >= 3);
        const delivered = receiver.to("/r", "delivered");
        expect(delivered.map((r) => [r.seq, r.verified, r.message.type])).toEqual([
          [1, true, "artifact.updated"],
          [2, true, "artifact.updated"],
          [3, true, "artifact.updated"],
        ]);
      } finally {
        await receiver.close();
      }
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
