/**
 * `Idempotency-Key` on the webhook routes (src/webhooks/keyed-answers.ts), on the app in
 * process: a repeat answers what the first answer said (a create's id and secret, a
 * rotation's new secret) and changes nothing; another request with the key is 422; a claim
 * of a request still in flight is 409; a claim its process left is taken over, with the
 * id the first run chose; a refused write gives its key back.
 */
import { describe, expect, it } from "vitest";
import { newWebhookId } from "../../src/model/webhook-ids.ts";
import { expectProblem } from "../http/contract.ts";
import { useTestApps } from "../support/in-process.ts";

const URL_OK = "http://127.0.0.1:9/hook";
const ENV = { WEBHOOK_ALLOW_HTTP_LOOPBACK: "1" };
const keyed = (key: string) => ({ "idempotency-key": key });

/** The key's object, as KeyedAnswers names it. */
async function answerKey(key: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key)));
  return `tenants/local/idempotency/${Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("")}.json`;
}

describe("Idempotency-Key on the webhook routes", () => {
  const apps = useTestApps();

  it("create: a repeat answers the same webhook and secret, and makes no second one", async () => {
    const t = apps({ env: ENV });
    const first = await t.request("POST", "/v1/webhooks", { url: URL_OK }, keyed("create-1"));
    expect(first.status).toBe(201);
    const again = await t.request("POST", "/v1/webhooks", { url: URL_OK }, keyed("create-1"));
    expect({ status: again.status, json: again.json, location: again.headers.get("location") }).toEqual({
      status: 201,
      json: first.json,
      location: first.headers.get("location"),
    });
    expect((await t.request("GET", "/v1/webhooks")).json.webhooks).toHaveLength(1);
    expectProblem(
      await t.request("POST", "/v1/webhooks", { url: `${URL_OK}/other` }, keyed("create-1")),
      422,
      "idempotency_key_reused",
    );
    expect((await t.request("GET", "/v1/webhooks")).json.webhooks).toHaveLength(1);
  });

  it("rotate-secret, update, replay and delete: each repeat answers as its first, and changes nothing", async () => {
    const t = apps({ env: ENV });
    const id = (await t.request("POST", "/v1/webhooks", { url: URL_OK })).json.webhook.id as string;
    const rotated = await t.request("POST", `/v1/webhooks/${id}/rotate-secret`, undefined, keyed("rotate"));
    expect(rotated.status).toBe(200);
    const rotatedAgain = await t.request("POST", `/v1/webhooks/${id}/rotate-secret`, undefined, keyed("rotate"));
    expect(rotatedAgain.json).toEqual(rotated.json);
    // The secret in force is the one both answers showed (no second rotation).
    expect((await t.webhooks?.registry.get("local", id))?.secret).toBe(rotated.json.webhook.secret);

    const paused = await t.request("PATCH", `/v1/webhooks/${id}`, { status: "paused" }, keyed("pause"));
    expect(paused.status).toBe(200);
    await t.request("PATCH", `/v1/webhooks/${id}`, { status: "active" });
    const pausedAgain = await t.request("PATCH", `/v1/webhooks/${id}`, { status: "paused" }, keyed("pause"));
    expect(pausedAgain.json).toEqual(paused.json);
    // Answered from the key, not applied again: the webhook stays active.
    expect((await t.request("GET", `/v1/webhooks/${id}`)).json.webhook.status).toBe("active");

    const replay = await t.request("POST", `/v1/webhooks/${id}/replay`, { threadId: "t1", since: 0 }, keyed("replay"));
    expect(replay.status).toBe(202);
    expect(
      (await t.request("POST", `/v1/webhooks/${id}/replay`, { threadId: "t1", since: 0 }, keyed("replay"))).json,
    ).toEqual(replay.json);

    const deleted = await t.request("DELETE", `/v1/webhooks/${id}`, undefined, keyed("delete"));
    expect(deleted.status).toBe(204);
    expect((await t.request("DELETE", `/v1/webhooks/${id}`, undefined, keyed("delete"))).status).toBe(204);
    expectProblem(await t.request("DELETE", `/v1/webhooks/${id}`), 404, "webhook_not_found");
  });

  it("a claim still in flight is 409 idempotency_key_in_flight; one its process left is taken over with its id", async () => {
    const t = apps({ env: ENV });
    const fresh = { v: 1, state: "pending", fingerprint: "", token: newWebhookId(), at: Date.now() };
    // The fingerprint must be the request's: take it from a real claim first.
    const probe = await t.request("POST", "/v1/webhooks", { url: URL_OK }, keyed("probe"));
    expect(probe.status).toBe(201);
    const kept = JSON.parse((await t.blobStore.get(await answerKey("probe"))) as string);

    await t.blobStore.put(await answerKey("busy"), JSON.stringify({ ...fresh, fingerprint: kept.fingerprint }));
    const busy = await t.request("POST", "/v1/webhooks", { url: URL_OK }, keyed("busy"));
    expectProblem(busy, 409, "idempotency_key_in_flight");
    expect(busy.headers.get("retry-after")).toBe("1");

    // A process claimed "left", made its webhook, and died before keeping the answer.
    const token = newWebhookId();
    const left = { ...fresh, fingerprint: kept.fingerprint, token, at: Date.now() - 31_000 };
    await t.blobStore.put(await answerKey("left"), JSON.stringify(left));
    const made = await t.request("POST", "/v1/webhooks", { url: URL_OK }, keyed("left"));
    expect(made.status).toBe(201);
    expect(made.json.webhook.id).toBe(token);
    const again = await t.request("POST", "/v1/webhooks", { url: URL_OK }, keyed("left"));
    expect(again.json).toEqual(made.json);
    // probe's and left's: two webhooks, not three.
    expect((await t.request("GET", "/v1/webhooks")).json.webhooks).toHaveLength(2);
  });

  it("a refused keyed write gives its key back: the same request is decided again", async () => {
    const t = apps({ env: { ...ENV, MAX_WEBHOOKS_PER_TENANT: "1" } });
    const first = await t.request("POST", "/v1/webhooks", { url: URL_OK });
    expect(first.status).toBe(201);
    expectProblem(await t.request("POST", "/v1/webhooks", { url: URL_OK }, keyed("full")), 422, "too_many_webhooks");
    expect(await t.blobStore.get(await answerKey("full"))).toBeNull();
    expect((await t.request("DELETE", `/v1/webhooks/${first.json.webhook.id}`)).status).toBe(204);
    expect((await t.request("POST", "/v1/webhooks", { url: URL_OK }, keyed("full"))).status).toBe(201);
  });
});
