/**
 * The typed client's webhook calls (`client.webhooks.*`) against a real Node server
 * process: each maps to its route and returns its typed body, the secret only from create
 * and rotateSecret, errors as ArtifactsApiError. The server resolves names with real DNS,
 * so the URLs here are literal addresses (loopback with WEBHOOK_ALLOW_HTTP_LOOPBACK=1).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ArtifactsApiError, createArtifactsClient } from "thread-artifacts/client";
import { useCluster } from "../support/cluster.ts";
import type { ServerProcess } from "../support/server-process.ts";

async function expectApiError(promise: Promise<unknown>, status: number, code: string): Promise<void> {
  const error = await promise.then(() => null, (e: unknown) => e);
  expect(error).toBeInstanceOf(ArtifactsApiError);
  expect([(error as ArtifactsApiError).status, (error as ArtifactsApiError).code]).toEqual([status, code]);
}

describe("client.webhooks", () => {
  const cluster = useCluster("all");
  let server: ServerProcess;
  beforeAll(async () => {
    server = await cluster.start({
      DATA_DIR: cluster.tempDir("artifacts-client-webhooks-"),
      WEBHOOK_ALLOW_HTTP_LOOPBACK: "1",
      MAX_WEBHOOKS_PER_TENANT: "4",
    });
  });

  it("create, get, list, update, rotateSecret, deliveries, replay, remove", async () => {
    const client = createArtifactsClient({ baseUrl: server.url });
    const created = await client.webhooks.create({
      url: "http://127.0.0.1:9/hook",
      threads: ["t1"],
      events: ["artifact-updated"],
      description: "from the client",
    });
    expect(created).toMatchObject({
      url: "http://127.0.0.1:9/hook",
      threads: ["t1"],
      events: ["artifact-updated"],
      description: "from the client",
      status: "active",
    });
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    const { secret, ...view } = created;

    expect(await client.webhooks.get(created.id)).toEqual(view);
    const second = await client.webhooks.create({ url: "https://93.184.215.14/in" });
    expect(second.threads).toBeNull();

    const ids = [created.id, second.id].sort();
    const first = await client.webhooks.list({ limit: 1 });
    expect(first.webhooks.map((w) => w.id)).toEqual([ids[0]]);
    expect(first.nextCursor).not.toBeNull();
    const rest = await client.webhooks.list({ limit: 1, cursor: first.nextCursor as string });
    expect(rest).toEqual({ webhooks: [expect.objectContaining({ id: ids[1] })], nextCursor: null });
    expect(JSON.stringify(await client.webhooks.list())).not.toContain("whsec_");

    const updated = await client.webhooks.update(created.id, { threads: null, status: "paused" });
    expect(updated).toMatchObject({ id: created.id, threads: null, status: "paused" });
    expect("secret" in updated).toBe(false);

    const rotated = await client.webhooks.rotateSecret(created.id);
    expect(rotated.secret).toMatch(/^whsec_/);
    expect(rotated.secret).not.toBe(secret);

    expect(await client.webhooks.deliveries(created.id, { limit: 5 })).toEqual(expect.any(Array));
    await client.webhooks.replay(created.id, { threadId: "t1", since: 0 });

    await client.webhooks.remove(created.id);
    await expectApiError(client.webhooks.get(created.id), 404, "webhook_not_found");
    await expectApiError(client.webhooks.remove(created.id), 404, "webhook_not_found");
    expect((await client.webhooks.list()).webhooks.map((w) => w.id)).toEqual([second.id]);
  });

  it("surfaces refusals as ArtifactsApiError: a private URL, a bad body, the limit", async () => {
    const client = createArtifactsClient({ baseUrl: server.url });
    await expectApiError(client.webhooks.create({ url: "https://10.0.0.1/hook" }), 400, "invalid_request");
    await expectApiError(client.webhooks.create({ url: "https://169.254.169.254/" }), 400, "invalid_request");
    await expectApiError(client.webhooks.create({ url: "https://[fd00::1]/" }), 400, "invalid_request");
    await expectApiError(client.webhooks.create({ url: "http://93.184.215.14/" }), 400, "invalid_request");
    await expectApiError(client.webhooks.create({ url: "https://93.184.215.14/", events: [] }), 400, "invalid_request");
    await expectApiError(
      client.webhooks.update(`wh_${"0".repeat(32)}`, { status: "active" }),
      404,
      "webhook_not_found",
    );
    await expectApiError(client.webhooks.list({ cursor: "forged" }), 400, "invalid_request");
    const existing = (await client.webhooks.list()).webhooks.length;
    for (let i = existing; i < 4; i++) await client.webhooks.create({ url: "https://93.184.215.14/in" });
    await expectApiError(client.webhooks.create({ url: "https://93.184.215.14/in" }), 422, "too_many_webhooks");
  });
});
