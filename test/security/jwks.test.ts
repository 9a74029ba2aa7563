import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Authenticator } from "../../src/http/auth/authenticator.ts";
import { expectProblem } from "../http/contract.ts";
import { useCluster } from "../support/cluster.ts";
import { freePort } from "../support/live-server.ts";
import type { ServerProcess } from "../support/server-process.ts";
import {
  generateSigningKey,
  type JwksServer,
  signHs256,
  type SigningKey,
  signWithKey,
  startJwksServer,
} from "./helpers.ts";

/**
 * JWT bearer tokens verified against a JSON Web Key Set served from loopback: RS256 and
 * ES256 keys made with Web Crypto, key rotation, the rate limit on refreshes (counted
 * by the JWKS server, never timed) and an unreachable issuer. The Authenticator runs on
 * a clock the test moves, so no test waits for real time to pass; one suite runs the
 * real Node server against the same kind of endpoint.
 */

const T0 = 1_900_000_000_000;

class Clock {
  ms = T0;
  advance(ms: number): void {
    this.ms += ms;
  }
}

function authenticatorFor(url: string, clock: Clock): Authenticator {
  return new Authenticator(
    { tokens: new Map(), jwtSecret: undefined, jwksUrl: url, clockSkewSeconds: 60 },
    { now: () => clock.ms, fetch: (input, init) => fetch(input, init) },
  );
}

/** A token valid for a day of the test clock. */
function claimsAt(clock: Clock, tenant: string): Record<string, unknown> {
  return { tenant, exp: Math.floor(clock.ms / 1000) + 86_400 };
}

const MINUTE = 60_000;

describe("JWKS with the Authenticator on a controlled clock", () => {
  let rsa: SigningKey;
  let ec: SigningKey;
  let rsaNext: SigningKey;
  const servers: JwksServer[] = [];

  beforeAll(async () => {
    [rsa, ec, rsaNext] = await Promise.all([
      generateSigningKey("RS256", "rsa-2026-01"),
      generateSigningKey("ES256", "ec-2026-01"),
      generateSigningKey("RS256", "rsa-2026-02"),
    ]);
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  async function jwks(keys: unknown[]): Promise<JwksServer> {
    const server = await startJwksServer(keys);
    servers.push(server);
    return server;
  }

  it("verifies RS256 and ES256 tokens by kid, each key only for its own algorithm", async () => {
    const other = await generateSigningKey("RS256", "rsa-not-published");
    const server = await jwks([rsa.jwk, ec.jwk]);
    const clock = new Clock();
    const auth = authenticatorFor(server.url, clock);

    expect(await auth.tenantOf(await signWithKey(rsa, claimsAt(clock, "tenant-rs")))).toBe("tenant-rs");
    expect(await auth.tenantOf(await signWithKey(ec, claimsAt(clock, "tenant-es")))).toBe("tenant-es");

    // Tampered claims under a valid signature.
    const good = await signWithKey(rsa, claimsAt(clock, "tenant-rs"));
    const forged = await signWithKey(rsa, claimsAt(clock, "tenant-other"));
    const [h, , s] = good.split(".");
    expect(await auth.tenantOf(`${h}.${forged.split(".")[1]}.${s}`)).toBeNull();
    // The right kid, the wrong key or the wrong algorithm.
    expect(await auth.tenantOf(await signWithKey(other, claimsAt(clock, "tenant-rs"), { kid: rsa.kid }))).toBeNull();
    expect(await auth.tenantOf(await signWithKey(ec, claimsAt(clock, "tenant-es"), { kid: rsa.kid }))).toBeNull();
    expect(await auth.tenantOf(await signWithKey(rsa, claimsAt(clock, "tenant-rs"), { kid: ec.kid }))).toBeNull();
    expect(await auth.tenantOf(await signWithKey(rsa, claimsAt(clock, "tenant-rs"), { alg: "ES256" }))).toBeNull();
    // Without a kid, a set of two keys is ambiguous.
    expect(await auth.tenantOf(await signWithKey(rsa, claimsAt(clock, "tenant-rs"), { kid: undefined }))).toBeNull();
    // Expired by the test clock.
    expect(
      await auth.tenantOf(await signWithKey(rsa, { tenant: "tenant-rs", exp: Math.floor(clock.ms / 1000) - 3600 })),
    ).toBeNull();
    // An HS256 token, whatever its kid, when only a JWKS is configured.
    expect(await auth.tenantOf(await signHs256("anything", claimsAt(clock, "tenant-rs"), { kid: rsa.kid }))).toBeNull();
    // All of that from one fetch: known kids never refetch.
    expect(server.requests).toBe(1);

    // A set with a single key may be used without a kid.
    const single = await jwks([ec.jwk]);
    const singleAuth = authenticatorFor(single.url, clock);
    expect(await singleAuth.tenantOf(await signWithKey(ec, claimsAt(clock, "tenant-es"), { kid: undefined }))).toBe(
      "tenant-es",
    );
  });

  it("ignores keys that are not signing keys for RS256 or ES256", async () => {
    const p384 = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, ["sign", "verify"]);
    const p384Jwk = { ...(await crypto.subtle.exportKey("jwk", p384.publicKey)), kid: "ec-384", alg: "ES384" };
    const encryption = await generateSigningKey("RS256", "rsa-enc");
    const rs512 = await generateSigningKey("RS256", "rsa-512");
    const server = await jwks([
      { ...encryption.jwk, use: "enc" },
      { ...rs512.jwk, alg: "RS512" },
      p384Jwk,
      { kty: "oct", kid: "oct-1", k: "c2VjcmV0", alg: "HS256" },
      { kty: "RSA", kid: "broken", n: "AQAB", e: "AQAB", alg: "RS256" },
      "not an object",
      rsa.jwk,
    ]);
    const clock = new Clock();
    const auth = authenticatorFor(server.url, clock);
    expect(await auth.tenantOf(await signWithKey(encryption, claimsAt(clock, "t1")))).toBeNull();
    expect(await auth.tenantOf(await signWithKey(rs512, claimsAt(clock, "t1")))).toBeNull();
    expect(await auth.tenantOf(await signHs256("secret", claimsAt(clock, "t1"), { kid: "oct-1" }))).toBeNull();
    // The usable key in the same set still works.
    expect(await auth.tenantOf(await signWithKey(rsa, claimsAt(clock, "t1")))).toBe("t1");
  });

  it("follows key rotation: an unknown kid refreshes (rate-limited), and a removed kid fails after the refresh", async () => {
    const server = await jwks([rsa.jwk]);
    const clock = new Clock();
    const auth = authenticatorFor(server.url, clock);
    const oldToken = await signWithKey(rsa, claimsAt(clock, "tenant-r"));
    const newToken = await signWithKey(rsaNext, claimsAt(clock, "tenant-r"));

    expect(await auth.tenantOf(oldToken)).toBe("tenant-r");
    expect(server.requests).toBe(1);

    // The issuer rotates: the new key in, the old one out.
    server.setKeys([rsaNext.jwk]);

    // Within 30 s of the last fetch an unknown kid does not refetch.
    clock.advance(10_000);
    expect(await auth.tenantOf(newToken)).toBeNull();
    expect(server.requests).toBe(1);

    // Past the interval, the unknown kid triggers one refresh and verifies.
    clock.advance(21_000);
    expect(await auth.tenantOf(newToken)).toBe("tenant-r");
    expect(server.requests).toBe(2);

    // After that refresh the removed kid fails, without another fetch...
    expect(await auth.tenantOf(oldToken)).toBeNull();
    expect(server.requests).toBe(2);
    // ...and still fails once a refetch is allowed again (it is gone from the set).
    clock.advance(31_000);
    expect(await auth.tenantOf(oldToken)).toBeNull();
    expect(server.requests).toBe(3);
    expect(await auth.tenantOf(newToken)).toBe("tenant-r");
    expect(server.requests).toBe(3);
  });

  it("refetches keys older than 10 minutes even for a known kid, so a removed key stops verifying", async () => {
    const server = await jwks([rsa.jwk, rsaNext.jwk]);
    const clock = new Clock();
    const auth = authenticatorFor(server.url, clock);
    const token = await signWithKey(rsa, claimsAt(clock, "tenant-m"));
    expect(await auth.tenantOf(token)).toBe("tenant-m");
    server.setKeys([rsaNext.jwk]);
    clock.advance(5 * MINUTE);
    expect(await auth.tenantOf(token)).toBe("tenant-m");
    expect(server.requests).toBe(1);
    clock.advance(6 * MINUTE);
    expect(await auth.tenantOf(token)).toBeNull();
    expect(server.requests).toBe(2);
    expect(await auth.tenantOf(await signWithKey(rsaNext, claimsAt(clock, "tenant-m")))).toBe("tenant-m");
    expect(server.requests).toBe(2);
  });

  it("bounds JWKS fetches under a flood of unknown kids: at most one per refresh interval", async () => {
    const server = await jwks([rsa.jwk]);
    const clock = new Clock();
    const auth = authenticatorFor(server.url, clock);
    const forged = (i: number) =>
      signWithKey(rsa, claimsAt(clock, "tenant-f"), { kid: `forged-${i}-${crypto.randomUUID()}` });

    // 300 at once on a cold key set: one fetch between them.
    const first = await Promise.all(Array.from({ length: 300 }, async (_, i) => auth.tenantOf(await forged(i))));
    expect(first.every((tenant) => tenant === null)).toBe(true);
    expect(server.requests).toBe(1);
    // 300 more, one after another, at the same instant: none.
    for (let i = 0; i < 300; i++) expect(await auth.tenantOf(await forged(1000 + i))).toBeNull();
    expect(server.requests).toBe(1);
    // The genuine key keeps working throughout.
    expect(await auth.tenantOf(await signWithKey(rsa, claimsAt(clock, "tenant-f")))).toBe("tenant-f");

    // Each time the interval passes, one more fetch for the whole flood.
    for (let round = 1; round <= 5; round++) {
      clock.advance(30_000);
      const results = await Promise.all(
        Array.from({ length: 100 }, async (_, i) => auth.tenantOf(await forged(round * 10_000 + i))),
      );
      expect(results.every((tenant) => tenant === null)).toBe(true);
      expect(server.requests).toBe(1 + round);
    }
  });

  it("answers null (never throws) when the JWKS is unreachable or broken, and keeps the keys it has through an outage", async () => {
    const clock = new Clock();
    const token = await signWithKey(rsa, claimsAt(clock, "tenant-d"));

    const closed = authenticatorFor(`http://127.0.0.1:${await freePort()}/jwks`, clock);
    expect(await closed.tenantOf(token)).toBeNull();
    expect(await closed.tenantOf(token)).toBeNull();

    for (
      const failure of [
        { status: 500, body: "{}" },
        { status: 404, body: "not found" },
        { status: 200, body: "{not json" },
        { status: 200, body: '{"keys":"nope"}' },
        { status: 200, body: "[]" },
      ]
    ) {
      const broken = await jwks([]);
      broken.fail(failure);
      const auth = authenticatorFor(broken.url, clock);
      expect(await auth.tenantOf(token), JSON.stringify(failure)).toBeNull();
      expect(broken.requests).toBe(1);
    }

    // Keys fetched before an outage stay in use through it.
    const server = await jwks([rsa.jwk]);
    const auth = authenticatorFor(server.url, clock);
    expect(await auth.tenantOf(token)).toBe("tenant-d");
    server.fail({ status: 503, body: "down" });
    clock.advance(11 * MINUTE);
    expect(await auth.tenantOf(token)).toBe("tenant-d");
    expect(server.requests).toBe(2);
    expect(await auth.tenantOf(await signWithKey(rsaNext, claimsAt(clock, "tenant-d")))).toBeNull();
    // The issuer comes back with a new key: found on the next allowed refresh.
    server.fail(null);
    server.setKeys([rsa.jwk, rsaNext.jwk]);
    clock.advance(31_000);
    expect(await auth.tenantOf(await signWithKey(rsaNext, claimsAt(clock, "tenant-d")))).toBe("tenant-d");
    expect(server.requests).toBe(3);
  });
});

describe("JWKS end to end (Node server process)", () => {
  let rsa: SigningKey;
  let ec: SigningKey;
  let jwksServer: JwksServer;
  let server: ServerProcess;
  const cluster = useCluster("all");

  beforeAll(async () => {
    [rsa, ec] = await Promise.all([generateSigningKey("RS256", "e2e-rsa"), generateSigningKey("ES256", "e2e-ec")]);
    jwksServer = await startJwksServer([rsa.jwk, ec.jwk]);
    server = await cluster.start({ DATA_DIR: cluster.tempDir("artifacts-jwks-"), AUTH_JWKS_URL: jwksServer.url });
  });

  afterAll(async () => {
    await server?.stop();
    await jwksServer?.close();
  });

  const exp = () => Math.floor(Date.now() / 1000) + 3600;

  async function post(base: string, threadId: string, token: string) {
    const response = await fetch(`${base}/v1/threads/${threadId}/artifacts`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ artifactType: "note", payload: { n: 1 } }),
    });
    const text = await response.text();
    return { status: response.status, headers: response.headers, text, json: text ? JSON.parse(text) : undefined };
  }

  it("accepts RS256 and ES256 tokens from the JWKS, each for its own tenant; refuses unknown kids and HS256", async () => {
    const threadId = `jwks-${crypto.randomUUID().slice(0, 8)}`;
    expect((await post(server.url, threadId, await signWithKey(rsa, { tenant: "rs-tenant", exp: exp() }))).status).toBe(
      201,
    );
    // Same thread id, another tenant: its own thread, seq 1.
    const es = await post(server.url, threadId, await signWithKey(ec, { sub: "es-tenant", exp: exp() }));
    expect(es.status).toBe(201);
    expect(es.json.thread.rolloutSeq).toBe(1);
    const read = await fetch(`${server.url}/v1/threads/${threadId}`, {
      headers: { authorization: `Bearer ${await signWithKey(rsa, { tenant: "rs-tenant", exp: exp() })}` },
    });
    expect((await read.json()).thread.rolloutSeq).toBe(1);

    const unknown = await post(
      server.url,
      threadId,
      await signWithKey(rsa, { tenant: "rs-tenant", exp: exp() }, { kid: "never-published" }),
    );
    expectProblem(unknown, 401, "unauthorized");
    expect(unknown.headers.get("www-authenticate")).toBe('Bearer error="invalid_token"');
    expectProblem(
      await post(server.url, threadId, await signHs256("guess", { tenant: "rs-tenant", exp: exp() })),
      401,
      "unauthorized",
    );
  });

  it("fetches the JWKS a bounded number of times under a flood of random kids", async () => {
    const before = jwksServer.requests;
    expect(before).toBeGreaterThanOrEqual(1);
    const started = Date.now();
    for (let batch = 0; batch < 6; batch++) {
      const results = await Promise.all(
        Array.from(
          { length: 25 },
          async () =>
            post(
              server.url,
              "flood",
              await signWithKey(rsa, { tenant: "rs-tenant", exp: exp() }, { kid: crypto.randomUUID() }),
            ),
        ),
      );
      for (const result of results) expectProblem(result, 401, "unauthorized");
    }
    // One refresh per 30 s interval at most: the bound follows the time the flood took,
    // so it holds on any machine (150 requests take far less than one interval).
    const intervals = Math.floor((Date.now() - started) / 30_000);
    expect(jwksServer.requests - before).toBeLessThanOrEqual(1 + intervals);
    // The genuine key still works after the flood.
    expect((await post(server.url, "after-flood", await signWithKey(ec, { tenant: "es-tenant", exp: exp() }))).status)
      .toBe(201);
  });

  it("answers 401, never 5xx, while the JWKS is unreachable", async () => {
    const down = await cluster.start({
      DATA_DIR: cluster.tempDir("artifacts-jwks-down-"),
      AUTH_JWKS_URL: `http://127.0.0.1:${await freePort()}/.well-known/jwks.json`,
    });
    for (const key of [rsa, ec, rsa]) {
      const result = await post(down.url, "down", await signWithKey(key, { tenant: "rs-tenant", exp: exp() }));
      expectProblem(result, 401, "unauthorized");
    }
    const health = await fetch(`${down.url}/healthz`);
    expect(health.status).toBe(200);
  });
});
