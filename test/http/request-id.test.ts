/**
 * Request ids (API.md "Operations"): every response carries `X-Request-Id`, whoever made
 * it (a handler, the 401 of the auth middleware, the CORS preflight, the 404 of an unknown
 * route, the 503 of an unexpected failure, a runtime that is misconfigured), and every
 * problem body has the same id as `requestId`. The contract suite checks the routes on
 * every runtime; these are the paths around them, in process.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { misconfiguredResponse } from "../../src/http/problem.ts";
import { requestIdOf } from "../../src/http/request-id.ts";
import { FaultyBlobStore } from "../support/faulty-blob-store.ts";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import { createTestApp } from "../support/in-process.ts";
import { readJsonResult } from "../support/http.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TOKEN = "request-id-token";
const ORIGIN = "https://app.example.com";

describe("requestIdOf", () => {
  it("keeps 1-128 chars of [A-Za-z0-9._:-] and replaces anything else with a UUID", () => {
    for (const kept of ["a", "A.b_c:d-9", "x".repeat(128), "0190a000-0000-7000-8000-000000000000"]) {
      expect(requestIdOf(kept)).toBe(kept);
    }
    for (const replaced of [undefined, null, "", " ", "x".repeat(129), "a b", "a/b", "a,b", "é", "a\tb", "<script>"]) {
      expect(requestIdOf(replaced), JSON.stringify(replaced)).toMatch(UUID);
    }
    expect(requestIdOf(undefined)).not.toBe(requestIdOf(undefined));
  });
});

describe("X-Request-Id on responses nobody's handler made", () => {
  let app: ReturnType<typeof createTestApp>;
  beforeAll(() => {
    app = createTestApp({ env: { AUTH_TOKENS: `${TOKEN}:tenant-rid`, CORS_ORIGINS: ORIGIN }, blobStore: "memory" });
  });
  afterAll(() => app.close());

  const request = async (path: string, init: RequestInit = {}) => readJsonResult(await app.app.request(path, init));

  it("a 401: header and problem body, the caller's id kept", async () => {
    const refused = await request("/v1/threads/t", { headers: { "x-request-id": "caller-401" } });
    expect(refused.status).toBe(401);
    expect(refused.headers.get("x-request-id")).toBe("caller-401");
    expect(refused.json).toMatchObject({ code: "unauthorized", requestId: "caller-401" });
    const generated = await request("/v1/threads/t", { headers: { "x-request-id": "not valid" } });
    expect(generated.headers.get("x-request-id")).toMatch(UUID);
    expect(generated.json.requestId).toBe(generated.headers.get("x-request-id"));
  });

  it("a CORS preflight, and X-Request-Id exposed to (and accepted from) browsers", async () => {
    const preflight = await app.app.request("/v1/threads/t/artifacts", {
      method: "OPTIONS",
      headers: {
        origin: ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, x-request-id",
        "x-request-id": "preflight-1",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("x-request-id")).toBe("preflight-1");
    expect((preflight.headers.get("access-control-allow-headers") ?? "").toLowerCase()).toContain("x-request-id");
    const created = await app.app.request("/v1/threads/t/artifacts", {
      method: "POST",
      headers: { origin: ORIGIN, authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ artifactType: "note", payload: 1 }),
    });
    expect(created.status).toBe(201);
    expect(created.headers.get("x-request-id")).toMatch(UUID);
    const exposed = (created.headers.get("access-control-expose-headers") ?? "").toLowerCase().split(/\s*,\s*/);
    expect(exposed).toContain("x-request-id");
  });

  it("the 404 of an unknown route and the 405 of a wrong method", async () => {
    const unknown = await request("/nope", {
      headers: { authorization: `Bearer ${TOKEN}`, "x-request-id": "unknown-route" },
    });
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get("x-request-id")).toBe("unknown-route");
    expect(unknown.json.requestId).toBe("unknown-route");
    const wrong = await request("/v1/threads/t/artifacts", {
      method: "PUT",
      headers: { authorization: `Bearer ${TOKEN}`, "x-request-id": "wrong-method" },
    });
    expect(wrong.status).toBe(405);
    expect(wrong.json.requestId).toBe("wrong-method");
  });
});

describe("X-Request-Id on failures", () => {
  it("the 503 of a rollout store that is down carries it in the header and the body", async () => {
    const store = new FaultyBlobStore(new MemoryBlobStore(), 1, { down: true });
    const app = createTestApp({ blobStore: store });
    try {
      const failed = await readJsonResult(
        await app.app.request("/v1/threads/t/artifacts", {
          method: "POST",
          headers: { "content-type": "application/json", "x-request-id": "store-down-1" },
          body: JSON.stringify({ artifactType: "note", payload: 1 }),
        }),
      );
      expect(failed.status).toBe(503);
      expect(failed.headers.get("x-request-id")).toBe("store-down-1");
      expect(failed.json).toMatchObject({ code: "unavailable", requestId: "store-down-1" });
    } finally {
      await app.close();
    }
  });

  it("a misconfigured runtime's 503 (no app runs) carries one too", async () => {
    const kept = await readJsonResult(
      misconfiguredResponse(new Request("http://x/v1/threads/t", { headers: { "x-request-id": "misconf-1" } })),
    );
    expect(kept.status).toBe(503);
    expect(kept.headers.get("x-request-id")).toBe("misconf-1");
    expect(kept.json).toMatchObject({ code: "unavailable", requestId: "misconf-1" });
    const generated = await readJsonResult(misconfiguredResponse(new Request("http://x/")));
    expect(generated.headers.get("x-request-id")).toMatch(UUID);
    expect(generated.json.requestId).toBe(generated.headers.get("x-request-id"));
  });
});
