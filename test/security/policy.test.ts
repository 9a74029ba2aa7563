// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
import { connect } from "node:net";
import { join } from "node:path";
import { inspect } from "node:util";
import { createClient } from "@libsql/client";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import { assertAuthPolicy, ConfigError, isLoopbackHost, loadConfig } from "../../src/runtime/config.ts";
import { s3FromConfig } from "../../src/runtime/s3-from-config.ts";
import { wire } from "../../src/runtime/wire.ts";
import { expectProblem, type HttpResult } from "../http/contract.ts";
import { useCluster } from "../support/cluster.ts";
import { startHranaServer } from "../support/hrana-server.ts";
import { createTestApp } from "../support/in-process.ts";
import { freePort, type LiveApp, startLiveApp } from "../support/live-server.ts";
import { S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, type S3rverHarness, startS3rver } from "../support/s3rver.ts";
import { startDenoFunction } from "../support/server-process.ts";
import { allKeys, generateSigningKey, nowSeconds, signHs256, signWithKey, unsignedJwt } from "./helpers.ts";
import { readJsonResult } from "../support/http.ts";
import { logToConsole } from "../support/logs.ts";

/**
 * The deployment rules of the Security issue: no authentication only on loopback (the
 * server refuses to start otherwise, edge functions refuse to serve), CORS from the
 * allowlist alone, request bodies bounded on a real socket whatever the headers say,
 * and no secret ever in a log line or an error body.
 */

const NO_AUTH = { AUTH_TOKENS: "", AUTH_JWT_SECRET: "", AUTH_JWKS_URL: "" };

async function read(response: Response): Promise<HttpResult> {
  return readJsonResult(response);
}

describe("no authentication only on loopback", () => {
  const cluster = useCluster();

  it("refuses to start a Node server on 0.0.0.0 (or ::) without authentication, naming AUTH_TOKENS", async () => {
    for (const host of ["0.0.0.0", "::"]) {
      const dir = cluster.tempDir("artifacts-policy-");
      const failure = await cluster.start({ ...NO_AUTH, HOST: host, DATA_DIR: dir, BLOB_STORE: "memory:" }).then(
        async (server) => {
          await server.stop();
          return null;
        },
        (error: Error) => error.message,
      );
      expect(failure, `HOST=${host} started`).not.toBeNull();
      expect(failure).toMatch(/exited with 1\b/);
      expect(failure).toContain(`refusing to listen on ${host} without authentication`);
      expect(failure).toContain("AUTH_TOKENS");
      expect(failure).not.toMatch(/listening on/i);
    }
  });

  it("starts on 0.0.0.0 with AUTH_TOKENS, serves on 127.0.0.1 and requires the token", async () => {
    const server = await cluster.start({
      ...NO_AUTH,
      AUTH_TOKENS: "wide-open-host-token-77:tenant-wide",
      HOST: "0.0.0.0",
      DATA_DIR: cluster.tempDir("artifacts-policy-"),
      BLOB_STORE: "memory:",
      CORS_ORIGINS: "https://app.example.com",
    });
    expect(server.url).toMatch(/^http:\/\/0\.0\.0\.0:\d+$/);
    const base = server.url.replace("0.0.0.0", "127.0.0.1");
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const anonymous = await read(await fetch(`${base}/v1/threads/wide`));
    expectProblem(anonymous, 401, "unauthorized");
    const created = await fetch(`${base}/v1/threads/wide/artifacts`, {
      method: "POST",
      headers: {
        authorization: "Bearer wide-open-host-token-77",
        "content-type": "application/json",
        origin: "https://app.example.com",
      },
      body: JSON.stringify({ artifactType: "note", payload: 1 }),
    });
    expect(created.status).toBe(201);
    expect(created.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    // A preflight over a real socket: answered without a token.
    const preflight = await fetch(`${base}/v1/threads/wide/artifacts/${crypto.randomUUID()}`, {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example.com",
        "access-control-request-method": "PATCH",
        "access-control-request-headers": "authorization, content-type, if-match, last-event-id",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    expect(preflight.headers.get("access-control-allow-methods")).toContain("PATCH");
  });

  it("assertAuthPolicy: loopback hosts only, and no host at all (edge) requires authentication", () => {
    const none = loadConfig({ ...NO_AUTH });
    for (const host of ["127.0.0.1", "127.0.0.2", "127.255.255.254", "localhost", "LocalHost", "::1", "[::1]"]) {
      expect(isLoopbackHost(host), host).toBe(true);
      expect(() => assertAuthPolicy(none, host), host).not.toThrow();
    }
    for (
      const host of [
        "0.0.0.0",
        "::",
        "[::]",
        "192.168.1.10",
        "10.0.0.1",
        "example.com",
        "127.0.0.1.nip.io",
        "localhost.example.com",
        "::ffff:127.0.0.1",
        "1.127.0.0.1",
        "",
      ]
    ) {
      expect(isLoopbackHost(host), host).toBe(false);
      expect(() => assertAuthPolicy(none, host), host).toThrow(ConfigError);
      expect(() => assertAuthPolicy(none, host), host).toThrow(/AUTH_TOKENS/);
    }
    // Deno functions and Workers cannot know where they listen: they pass no host.
    expect(() => assertAuthPolicy(none, undefined)).toThrow(/authentication is required here: set AUTH_TOKENS/);
    for (
      const env of [{ AUTH_TOKENS: "t:tenant" }, { AUTH_JWT_SECRET: "s" }, {
        AUTH_JWKS_URL: "https://issuer.example.com/jwks",
      }]
    ) {
      const config = loadConfig({ ...NO_AUTH, ...env });
      for (const host of [undefined, "0.0.0.0", "127.0.0.1"]) {
        expect(() => assertAuthPolicy(config, host)).not.toThrow();
      }
    }
    // A malformed AUTH_TOKENS entry is a configuration error that does not echo the token.
    expect(() => loadConfig({ AUTH_TOKENS: "super-secret-token-no-tenant" })).toThrow(ConfigError);
    try {
      loadConfig({ AUTH_TOKENS: "super-secret-token:../bad" });
    } catch (error) {
      expect((error as Error).message).not.toContain("super-secret-token");
    }
  });

  it("a Deno function without HOST and without authentication serves nothing: 503 problem+json, and says why once", async () => {
    const dir = cluster.tempDir("artifacts-policy-deno-");
    // HOST empty: `deno serve` does not tell the function where it listens.
    const server = await cluster.start(
      { ...NO_AUTH, HOST: "", DATA_DIR: dir, BLOB_STORE: "memory:" },
      (env) => startDenoFunction("app", env),
    );
    for (const path of ["/v1/threads/x", "/healthz", "/v1/threads"]) {
      const result = await read(await fetch(`${server.url}${path}`));
      expectProblem(result, 503, "unavailable");
      expect(result.json.detail).toBe("the service is misconfigured");
    }
    const output = server.output();
    expect(output).toContain("configuration error: authentication is required here: set AUTH_TOKENS");
    expect(output.match(/configuration error/g)).toHaveLength(1);
  });
});

describe("CORS", () => {
  const ALLOWED = "https://app.example.com";
  const TOKEN = "cors-token-1";
  let allowList: ReturnType<typeof createTestApp>;
  let noCors: ReturnType<typeof createTestApp>;
  let anyOrigin: ReturnType<typeof createTestApp>;

  beforeAll(() => {
    const env = { AUTH_TOKENS: `${TOKEN}:tenant-cors` };
    allowList = createTestApp({
      env: { ...env, CORS_ORIGINS: `${ALLOWED}, http://localhost:5173` },
      blobStore: "memory",
    });
    noCors = createTestApp({ env, blobStore: "memory" });
    anyOrigin = createTestApp({ env: { ...env, CORS_ORIGINS: "*" }, blobStore: "memory" });
  });

  afterAll(() => {
    for (const app of [allowList, noCors, anyOrigin]) app?.close();
  });

  const preflightHeaders = (origin: string) => ({
    origin,
    "access-control-request-method": "PATCH",
    "access-control-request-headers": "authorization, content-type, if-match, last-event-id",
  });

  function corsHeaders(headers: Headers): string[] {
    return [...headers.keys()].filter((name) => name.startsWith("access-control-"));
  }

  it("gives an allowed origin Access-Control-Allow-Origin on real requests, 401s included", async () => {
    for (const origin of [ALLOWED, "http://localhost:5173"]) {
      const created = await allowList.app.request("/v1/threads/cors/artifacts", {
        method: "POST",
        headers: { origin, authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ artifactType: "note", payload: 1 }),
      });
      expect(created.status).toBe(201);
      expect(created.headers.get("access-control-allow-origin")).toBe(origin);
      expect(created.headers.get("vary") ?? "").toMatch(/\bOrigin\b/);
      const exposed = (created.headers.get("access-control-expose-headers") ?? "").toLowerCase().split(/\s*,\s*/);
      for (const header of ["etag", "location", "x-artifacts-source", "retry-after", "www-authenticate"]) {
        expect(exposed).toContain(header);
      }

      const read = await allowList.app.request("/v1/threads/cors", {
        headers: { origin, authorization: `Bearer ${TOKEN}` },
      });
      expect(read.status).toBe(200);
      expect(read.headers.get("access-control-allow-origin")).toBe(origin);
      // A browser must be able to read why it was refused.
      const refused = await allowList.app.request("/v1/threads/cors", { headers: { origin } });
      expect(refused.status).toBe(401);
      expect(refused.headers.get("access-control-allow-origin")).toBe(origin);
    }
  });

  it("answers an allowed origin's preflight for PATCH with authorization, content-type, if-match and last-event-id, without a token", async () => {
    for (
      const path of [
        `/v1/threads/cors/artifacts/${crypto.randomUUID()}`,
        "/v1/threads/cors/events",
        "/v1/threads/cors/artifacts",
      ]
    ) {
      const preflight = await allowList.app.request(path, { method: "OPTIONS", headers: preflightHeaders(ALLOWED) });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get("access-control-allow-origin")).toBe(ALLOWED);
      const methods = (preflight.headers.get("access-control-allow-methods") ?? "").split(/\s*,\s*/);
      for (const method of ["GET", "HEAD", "POST", "PATCH", "DELETE"]) expect(methods).toContain(method);
      const allowed = (preflight.headers.get("access-control-allow-headers") ?? "").toLowerCase().split(/\s*,\s*/);
      for (const header of ["authorization", "content-type", "if-match", "last-event-id", "if-none-match"]) {
        expect(allowed).toContain(header);
      }
      expect(preflight.headers.get("access-control-allow-credentials")).toBeNull();
    }
  });

  it("gives a denied origin no Access-Control-Allow-Origin, on real requests and preflights", async () => {
    for (
      const origin of [
        "https://evil.example.com",
        "https://app.example.com.evil.com",
        "http://app.example.com",
        "null",
        "https://APP.example.com",
      ]
    ) {
      const read = await allowList.app.request("/v1/threads/cors", {
        headers: { origin, authorization: `Bearer ${TOKEN}` },
      });
      expect(read.status).toBe(200);
      expect(read.headers.get("access-control-allow-origin"), origin).toBeNull();
      const preflight = await allowList.app.request("/v1/threads/cors/artifacts", {
        method: "OPTIONS",
        headers: preflightHeaders(origin),
      });
      expect(preflight.headers.get("access-control-allow-origin"), origin).toBeNull();
      expect(preflight.headers.get("access-control-allow-credentials")).toBeNull();
    }
  });

  it("sends no CORS headers at all without CORS_ORIGINS", async () => {
    const read = await noCors.app.request("/v1/threads/x", {
      headers: { origin: ALLOWED, authorization: `Bearer ${TOKEN}` },
    });
    expect(read.status).toBe(404);
    expect(corsHeaders(read.headers)).toEqual([]);
    const refused = await noCors.app.request("/v1/threads/x", { headers: { origin: ALLOWED } });
    expect(refused.status).toBe(401);
    expect(corsHeaders(refused.headers)).toEqual([]);
    const preflight = await noCors.app.request("/v1/threads/x/artifacts", {
      method: "OPTIONS",
      headers: preflightHeaders(ALLOWED),
    });
    expect(corsHeaders(preflight.headers)).toEqual([]);
    expect(preflight.status).toBe(405);
  });

  it("allows any origin with CORS_ORIGINS=*", async () => {
    const read = await anyOrigin.app.request("/v1/threads/x", {
      headers: { origin: "https://anywhere.example.org", authorization: `Bearer ${TOKEN}` },
    });
    expect(read.headers.get("access-control-allow-origin")).toBe("*");
  });
});

/** One HTTP/1.1 exchange on a raw socket: `send` writes what it wants; resolves with everything received once the response is complete or the server closes. */
function rawExchange(
  port: number,
  send: (socket: import("node:net").Socket) => Promise<void> | void,
): Promise<{ response: string; sentBytes: () => number }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let received = Buffer.alloc(0);
    let settled = false;
    const finish = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      socket.destroy();
      if (error) reject(error);
      else resolve({ response: received.toString("latin1"), sentBytes: () => socket.bytesWritten });
    };
    const complete = () => {
      const text = received.toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) return false;
      const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
      return length ? received.length >= end + 4 + Number(length[1]) : false;
    };
    // A bound on a broken test, not a synchronisation: every case answers at once.
    const deadline = setTimeout(
      () =>
        finish(
          new Error(
            `no complete response within 20 s; got ${JSON.stringify(received.toString("latin1").slice(0, 200))}`,
          ),
        ),
      20_000,
    );
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (complete()) finish();
    });
    socket.on("close", () => finish());
    socket.on("error", () => {
      // The server may reset once it has answered (it will not read the rest): keep what arrived.
    });
    socket.once("connect", () => {
      Promise.resolve(send(socket)).catch(() => {});
    });
  });
}

function write(socket: import("node:net").Socket, data: string | Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    socket.write(data, () => resolve());
  });
}

function statusOf(response: string): number {
  return Number(/^HTTP\/1\.1 (\d{3}) /.exec(response)?.[1] ?? 0);
}

function problemOf(response: string): any {
  return JSON.parse(response.slice(response.indexOf("\r\n\r\n") + 4));
}

describe("request bodies are bounded on a real socket", () => {
  const TOKEN = "body-token-1";
  const MAX = 65_536;
  const BOUND = MAX + 16 * 1024;
  let live: LiveApp;
  let store: MemoryBlobStore;
  let port: number;

  beforeAll(async () => {
    store = new MemoryBlobStore();
    live = await startLiveApp({ env: { AUTH_TOKENS: `${TOKEN}:tenant-body` }, blobStore: store });
    port = Number(new URL(live.url).port);
  });

  afterAll(async () => {
    await live?.stop();
  });

  const head = (headers: string) =>
    `POST /v1/threads/bodies/artifacts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\n${headers}\r\n`;

  it("refuses a declared 100 MB body with 413 after a few KB, without waiting for the rest", async () => {
    const { response, sentBytes } = await rawExchange(port, async (socket) => {
      await write(socket, head("Content-Length: 104857600\r\n"));
      await write(socket, `{"artifactType":"big","payload":"${"a".repeat(4000)}`);
      // ...and nothing more: the answer must come anyway.
    });
    expect(statusOf(response)).toBe(413);
    expect(problemOf(response)).toMatchObject({ code: "payload_too_large", status: 413 });
    expect(sentBytes()).toBeLessThan(5000);
    expect(await allKeys(store)).toEqual([]);
  });

  it("cancels a chunked body that streams past the bound: 413 before the body ends", async () => {
    const chunk = "a".repeat(16 * 1024);
    const { response, sentBytes } = await rawExchange(port, async (socket) => {
      await write(socket, head("Transfer-Encoding: chunked\r\n"));
      const start = '{"artifactType":"big","payload":"';
      await write(socket, `${Buffer.byteLength(start).toString(16)}\r\n${start}\r\n`);
      // Twice the bound, never terminated: the server must not wait for the end.
      for (let i = 0; i < Math.ceil((2 * BOUND) / chunk.length); i++) {
        await write(socket, `${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      }
    });
    expect(statusOf(response)).toBe(413);
    expect(problemOf(response).code).toBe("payload_too_large");
    expect(sentBytes()).toBeLessThan(3 * BOUND);
    expect(await allKeys(store)).toEqual([]);
  });

  it("never lets a lying small Content-Length smuggle a large body: 400/413 and nothing stored", async () => {
    for (const declared of [10, 100, 1000]) {
      const body = JSON.stringify({ artifactType: "big", payload: "a".repeat(200_000) });
      const { response } = await rawExchange(port, async (socket) => {
        await write(socket, head(`Content-Length: ${declared}\r\n`));
        await write(socket, body);
      });
      expect([400, 413]).toContain(statusOf(response));
    }
    expect(await allKeys(store)).toEqual([]);
  });

  it("holds the payload bound whatever Content-Length says (exact, absent, lying), in process and on the socket", async () => {
    const over = JSON.stringify({ artifactType: "edge", payload: "p".repeat(MAX - 1) }); // payload serializes to MAX + 1 bytes
    const exact = JSON.stringify({ artifactType: "edge", payload: "p".repeat(MAX - 2) });
    // On the socket: exact Content-Length, then chunked without one.
    const withLength = await rawExchange(
      port,
      (socket) => write(socket, head(`Content-Length: ${Buffer.byteLength(over)}\r\n`) + over),
    );
    expect(statusOf(withLength.response)).toBe(413);
    const chunked = await rawExchange(
      port,
      (socket) =>
        write(
          socket,
          `${head("Transfer-Encoding: chunked\r\n")}${Buffer.byteLength(over).toString(16)}\r\n${over}\r\n0\r\n\r\n`,
        ),
    );
    expect(statusOf(chunked.response)).toBe(413);
    expect(problemOf(chunked.response).detail).toContain("payload serializes to more than 65536 bytes");
    // In process, where the header can say anything at all.
    for (const contentLength of ["0", "10", "-1", "abc", String(BOUND), "1"]) {
      for (const body of [over, JSON.stringify({ artifactType: "big", payload: "q".repeat(3 * BOUND) })]) {
        const response = await live.app.request("/v1/threads/bodies/artifacts", {
          method: "POST",
          headers: {
            authorization: `Bearer ${TOKEN}`,
            "content-type": "application/json",
            "content-length": contentLength,
          },
          body,
        });
        const result = await read(response);
        expectProblem(result, 413, "payload_too_large");
      }
    }
    expect(await allKeys(store)).toEqual([]);
    // The edge itself is accepted.
    const accepted = await rawExchange(
      port,
      (socket) => write(socket, head(`Content-Length: ${Buffer.byteLength(exact)}\r\n`) + exact),
    );
    expect(statusOf(accepted.response)).toBe(201);
    expect(await allKeys(store)).toHaveLength(1);
  });

  it("refuses numbers JSON cannot carry back (1e400 would be stored as null): 400 and nothing stored", async () => {
    const before = await allKeys(store);
    for (const payload of ["1e400", "-1e400", "[1,2,1e999]", '{"deep":{"n":-1E+400}}']) {
      const response = await live.app.request("/v1/threads/numbers/artifacts", {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: `{"artifactType":"n","payload":${payload}}`,
      });
      expectProblem(await read(response), 400, "invalid_request");
    }
    expect(await allKeys(store)).toEqual(before);
    const large = await live.app.request("/v1/threads/numbers/artifacts", {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: '{"artifactType":"n","payload":[1e308,-1e308,5e-324]}',
    });
    expect(large.status).toBe(201);
    expect((await large.json()).artifact.payload).toEqual([1e308, -1e308, 5e-324]);
  });
});

describe("no secret in any log line or error body", () => {
  const STATIC_TOKEN = "static-token-SECRET-5f0a61c2";
  const JWT_SECRET = "jwt-hs256-SECRET-0b7e44d9";
  const LIBSQL_SECRET = "libsql-auth-SECRET-9c2d18ee";
  const AWS_WRONG_SECRET = "aws-wrong-SECRET-3a81f07b";
  const CURSOR_SECRET = "cursor-SECRET-71c0ab55";
  let s3: S3rverHarness;
  let hrana: Awaited<ReturnType<typeof startHranaServer>>;
  let dir: string;
  const cluster = useCluster("all");

  beforeAll(async () => {
    dir = cluster.tempDir("artifacts-secrets-");
    s3 = await startS3rver();
    // A libSQL server that wants another token: every cache call is refused (401).
    hrana = await startHranaServer({ path: join(dir, "cache.db"), authToken: "the-token-hrana-expects" });
  });

  afterAll(async () => {
    await hrana?.close();
    await s3?.close();
  });

  /** Every failure we can provoke from outside; returns every secret-bearing string sent and every answer. */
  async function provoke(
    fetchFn: (path: string, init?: RequestInit) => Promise<Response>,
  ): Promise<{ sentTokens: string[]; answers: string[]; statuses: number[] }> {
    const rsa = await generateSigningKey("RS256", "logs-rsa");
    const valid = await signHs256(JWT_SECRET, { tenant: "tenant-logs", exp: nowSeconds() + 3600 });
    const sentTokens = [
      STATIC_TOKEN,
      valid,
      await signHs256(JWT_SECRET, { tenant: "tenant-logs", exp: nowSeconds() - 3600 }),
      await signHs256("not-the-secret", { tenant: "tenant-logs" }),
      await signHs256(JWT_SECRET, { tenant: "../escape" }),
      unsignedJwt({ tenant: "tenant-logs" }),
      await signWithKey(rsa, { tenant: "tenant-logs", exp: nowSeconds() + 3600 }),
      `${STATIC_TOKEN}x`,
    ];
    const answers: string[] = [];
    const statuses: number[] = [];
    const call = async (path: string, init: RequestInit = {}) => {
      const response = await fetchFn(path, init);
      statuses.push(response.status);
      if ((response.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
        await response.body?.cancel();
        return;
      }
      answers.push(`${response.status} ${[...response.headers].join(";")} ${await response.text()}`);
    };
    const json = (token: string, body: unknown, method = "POST"): RequestInit => ({
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    for (const token of sentTokens) {
      await call("/v1/threads/logs/artifacts", json(token, { artifactType: "note", payload: { n: 1 } }));
      await call("/v1/threads/logs", { headers: { authorization: `Bearer ${token}` } });
      await call(`/v1/threads/logs?access_token=${encodeURIComponent(token)}`);
      await call(`/v1/threads/logs/events?access_token=${encodeURIComponent(token)}`);
      await call(`/v1/threads/logs/${encodeURIComponent(token)}`, {
        headers: { authorization: `Basic ${btoa(`user:${token}`)}` },
      });
    }
    for (const token of [STATIC_TOKEN, valid]) {
      await call("/v1/threads?limit=5", { headers: { authorization: `Bearer ${token}` } });
      await call("/v1/threads?cursor=forged", { headers: { authorization: `Bearer ${token}` } });
      await call(`/v1/threads/logs/artifacts/${crypto.randomUUID()}`, json(token, { payload: 2 }, "PATCH"));
      await call(`/v1/threads/logs/artifacts/${crypto.randomUUID()}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${token}` },
      });
      // A credential sent as the value of an unknown field is not quoted back (field names are: they are the caller's own).
      await call("/v1/threads/logs/artifacts", json(token, { artifactType: "x", payload: 1, token }));
    }
    await call("/healthz");
    return { sentTokens, answers, statuses };
  }

  function expectNoSecrets(text: string, secrets: string[], where: string): void {
    for (const secret of secrets) {
      expect(text.includes(secret), `${where} contains ${secret.slice(0, 24)}…`).toBe(false);
      // A JWT's signature alone identifies it too.
      const parts = secret.split(".");
      if (parts.length === 3 && (parts[2] as string).length > 20) {
        expect(text.includes(parts[2] as string), `${where} contains a JWT signature`).toBe(false);
      }
    }
  }

  it("Node server process: bad tokens, JWKS down, S3 refusing our key, libSQL refusing our token", async () => {
    const bucket = await s3.createBucket();
    const secrets = [STATIC_TOKEN, JWT_SECRET, LIBSQL_SECRET, AWS_WRONG_SECRET, S3_SECRET_ACCESS_KEY, CURSOR_SECRET];
    const runs: Array<{ name: string; env: Record<string, string> }> = [
      {
        name: "S3 refuses the key, cache unreachable",
        env: {
          BLOB_STORE: `s3://${bucket}?endpoint=${encodeURIComponent(s3.endpoint)}&region=us-east-1`,
          AWS_ACCESS_KEY_ID: S3_ACCESS_KEY_ID,
          AWS_SECRET_ACCESS_KEY: AWS_WRONG_SECRET,
          LIBSQL_URL: `http://127.0.0.1:${await freePort()}`,
        },
      },
      {
        name: "S3 works, libSQL refuses the token",
        env: {
          BLOB_STORE: `s3://${bucket}?endpoint=${encodeURIComponent(s3.endpoint)}&region=us-east-1`,
          AWS_ACCESS_KEY_ID: S3_ACCESS_KEY_ID,
          AWS_SECRET_ACCESS_KEY: S3_SECRET_ACCESS_KEY,
          LIBSQL_URL: hrana.url,
        },
      },
    ];
    for (const run of runs) {
      const server = await cluster.start({
        DATA_DIR: dir,
        AUTH_TOKENS: `${STATIC_TOKEN}:tenant-logs`,
        AUTH_JWT_SECRET: JWT_SECRET,
        AUTH_JWKS_URL: `http://127.0.0.1:${await freePort()}/jwks`,
        LIBSQL_AUTH_TOKEN: LIBSQL_SECRET,
        CURSOR_SECRET,
        ...run.env,
      });
      let result: Awaited<ReturnType<typeof provoke>>;
      try {
        result = await provoke((path, init) => fetch(`${server.url}${path}`, init));
      } finally {
        await server.stop();
      }
      const output = server.output();
      // The run did fail where it should, and said so in the log.
      expect(result.statuses, run.name).toContain(401);
      expect(result.statuses, run.name).toContain(503);
      expect(result.statuses.every((s) => s < 500 || s === 503), run.name).toBe(true);
      expect(output, run.name).toMatch(/unexpected error|cache .* failed|blob store call failed/);
      expectNoSecrets(output, [...secrets, ...result.sentTokens], `${run.name}: server output`);
      for (const answer of result.answers) {
        expectNoSecrets(answer, [...secrets, ...result.sentTokens], `${run.name}: answer`);
      }
    }
  });

  it("app in process: the same failures, console output captured", async () => {
    const bucket = await s3.createBucket();
    const env = {
      AUTH_TOKENS: `${STATIC_TOKEN}:tenant-logs`,
      AUTH_JWT_SECRET: JWT_SECRET,
      AUTH_JWKS_URL: `http://127.0.0.1:${await freePort()}/jwks`,
      LIBSQL_URL: hrana.url,
      LIBSQL_AUTH_TOKEN: LIBSQL_SECRET,
      CURSOR_SECRET,
      BLOB_STORE: `s3://${bucket}?endpoint=${encodeURIComponent(s3.endpoint)}&region=us-east-1`,
      AWS_ACCESS_KEY_ID: S3_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: AWS_WRONG_SECRET,
    };
    const config = loadConfig(env);
    if (config.blobStore.kind !== "s3") throw new Error("expected an s3 BLOB_STORE");
    const wired = wire({
      config,
      blobStore: s3FromConfig(config.blobStore, env),
      connectLibsql: () => createClient({ url: config.libsqlUrl, authToken: LIBSQL_SECRET }),
    });
    // Every record, debug included, as objects to the console (as on Workers).
    logToConsole("debug");
    const lines: string[] = [];
    const spies = (["log", "info", "warn", "error", "debug", "trace"] as const).map((level) =>
      vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
        lines.push(`${level}: ${args.map((a) => (typeof a === "string" ? a : inspect(a, { depth: 10 }))).join(" ")}`);
      })
    );
    let result: Awaited<ReturnType<typeof provoke>>;
    try {
      result = await provoke(async (path, init) => wired.app.request(path, init));
    } finally {
      for (const spy of spies) spy.mockRestore();
      wired.cache.close();
    }
    expect(result.statuses).toContain(401);
    expect(result.statuses).toContain(503);
    expect(lines.length).toBeGreaterThan(0);
    const secrets = [STATIC_TOKEN, JWT_SECRET, LIBSQL_SECRET, AWS_WRONG_SECRET, CURSOR_SECRET, ...result.sentTokens];
    expectNoSecrets(lines.join("\n"), secrets, "console output");
    for (const answer of result.answers) expectNoSecrets(answer, secrets, "answer");
  });
});
