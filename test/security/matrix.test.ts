// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
import { createClient } from "@libsql/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import type { BlobStore } from "../../src/blob/port.ts";
import { Authenticator } from "../../src/http/auth/authenticator.ts";
import { expectProblem, type HttpResult } from "../http/contract.ts";
import { createTestApp } from "../support/in-process.ts";
import { Cluster } from "../support/cluster.ts";
import {
  allKeys,
  base64url,
  generateSigningKey,
  nowSeconds,
  publicKeyPem,
  ROLLOUT_KEY,
  signHs256,
  signWithKey,
  SseReader,
  startJwksServer,
  unsignedJwt,
} from "./helpers.ts";
import { readJsonResult } from "../support/http.ts";

/**
 * The authentication matrix of the Security issue: every route × every kind of
 * credential, on the app in process and on the Node server process, with static
 * tokens (AUTH_TOKENS) and HS256 JWTs (tenant claim, and `sub` when there is none)
 * accepted by the same server. Then what must never cross tenants: lists, events,
 * error bodies, rollout keys and cache rows.
 */

const JWT_SECRET = "matrix-hs256-secret-1f7c2a9e";
const STATIC_TOKENS: Record<string, string> = {
  "tenant-alpha": "static-token-alpha-6c1d93",
  "tenant-beta": "static-token-beta-2e8f40",
};
const TENANTS = ["tenant-alpha", "tenant-beta", "tenant-gamma", "tenant-delta"] as const;
type Tenant = (typeof TENANTS)[number];
const ENV = {
  AUTH_TOKENS: Object.entries(STATIC_TOKENS)
    .map(([tenant, token]) => `${token}:${tenant}`)
    .join(","),
  AUTH_JWT_SECRET: JWT_SECRET,
  // Compaction objects too must land under their tenant.
  COMPACT_EVERY: "3",
  // Every webhook route x credential makes its own subscription.
  MAX_WEBHOOKS_PER_TENANT: "1000",
};

/** Claims naming `tenant` the way its tokens do: gamma by the `tenant` claim, delta by `sub` alone. */
function tenantClaims(tenant: Tenant): Record<string, unknown> {
  return tenant === "tenant-delta" ? { sub: tenant } : { tenant, sub: `user-of-${tenant}` };
}

/** The valid token of each tenant: alpha and beta static, gamma and delta HS256 JWTs. */
async function tokenOf(tenant: Tenant): Promise<string> {
  const fixed = STATIC_TOKENS[tenant];
  if (fixed) return fixed;
  return signHs256(JWT_SECRET, { ...tenantClaims(tenant), exp: nowSeconds() + 3600 });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

interface Target {
  fetch: (path: string, init?: RequestInit) => Promise<Response>;
  store: BlobStore;
  libsqlUrl: string;
  close: () => Promise<void>;
}

async function inProcessTarget(env: Record<string, string> = ENV): Promise<Target> {
  const store = new MemoryBlobStore();
  const t = createTestApp({ env, blobStore: store });
  return {
    fetch: async (path, init) => t.app.request(path, init),
    store,
    libsqlUrl: t.config.libsqlUrl,
    close: async () => t.close(),
  };
}

async function nodeProcessTarget(): Promise<Target> {
  const cluster = new Cluster();
  const { dir, rolloutDir, dbPath } = cluster.dataDir("artifacts-matrix-");
  const server = await cluster.start({ DATA_DIR: dir, ...ENV });
  return {
    fetch: (path, init) => fetch(`${server.url}${path}`, init),
    store: new FsBlobStore(rolloutDir),
    libsqlUrl: `file:${dbPath}`,
    close: async () => {
      await server.stop();
      await cluster.cleanup();
    },
  };
}

interface Call {
  method: string;
  path: string;
  body?: unknown;
  headers?: Record<string, string>;
}

/** Reads the whole answer; an event stream is read up to its first `artifact-updated` event (if `events`), then cancelled. */
async function send(
  t: Target,
  call: Call,
  options: { firstEvent?: boolean } = {},
): Promise<HttpResult & { firstUpdate?: any }> {
  const headers: Record<string, string> = { ...call.headers };
  const init: RequestInit = { method: call.method, headers };
  if (call.body !== undefined) {
    init.body = JSON.stringify(call.body);
    headers["content-type"] ??= "application/json";
  }
  const response = await t.fetch(call.path, init);
  if ((response.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
    let firstUpdate: any;
    if (options.firstEvent && response.body) {
      const reader = new SseReader(response.body);
      await reader.until(() => reader.updates.length > 0, "the first artifact-updated event");
      firstUpdate = reader.updates[0];
      await reader.close();
    } else {
      await response.body?.cancel();
    }
    return { status: response.status, headers: response.headers, text: "", json: undefined, firstUpdate };
  }
  return readJsonResult(response);
}

interface Fixture {
  owner: Tenant;
  threadId: string;
  artifactId: string;
  marker: string;
}

let fixtureCounter = 0;

/** A fresh thread of `owner` holding one artifact whose payload carries a marker no one else knows. */
async function fixture(t: Target, owner: Tenant, label: string): Promise<Fixture> {
  fixtureCounter++;
  const threadId = `m${fixtureCounter}-${label}-${crypto.randomUUID().slice(0, 8)}`;
  const marker = `marker-${owner}-${crypto.randomUUID()}`;
  const created = await send(t, {
    method: "POST",
    path: `/v1/threads/${threadId}/artifacts`,
    body: { artifactType: "secret-plan", identityKey: `identity-${marker}`, payload: { owner, marker } },
    headers: bearer(await tokenOf(owner)),
  });
  expect(created.status).toBe(201);
  return { owner, threadId, artifactId: created.json.artifact.id, marker };
}

type RouteName =
  | "create"
  | "read-thread"
  | "get-artifact"
  | "update"
  | "remove"
  | "list-threads"
  | "merge"
  | "read-thread as of a seq"
  | "versions"
  | "fork"
  | "delete-thread"
  | "events"
  | "events (access_token)"
  | "events of many threads";
const ROUTES: RouteName[] = [
  "create",
  "read-thread",
  "get-artifact",
  "update",
  "remove",
  "list-threads",
  "merge",
  "read-thread as of a seq",
  "versions",
  "fork",
  "delete-thread",
  "events",
  "events (access_token)",
  "events of many threads",
];

/** Where the fork route puts its fork of a thread. */
const forkOf = (threadId: string) => `fork-of-${threadId}`;

/** The request for `route` on the fixture, carrying `token` (or none), written as tenant `caller`. */
function requestFor(
  route: RouteName,
  fx: { threadId: string; artifactId: string },
  token: string | undefined,
  caller: string,
): Call {
  const headers = token === undefined || route === "events (access_token)" ? {} : bearer(token);
  const thread = `/v1/threads/${fx.threadId}`;
  switch (route) {
    case "create":
      return {
        method: "POST",
        path: `${thread}/artifacts`,
        body: { artifactType: "note", payload: { owner: caller, n: 1 } },
        headers,
      };
    case "read-thread":
      return { method: "GET", path: thread, headers };
    case "get-artifact":
      return { method: "GET", path: `${thread}/artifacts/${fx.artifactId}`, headers };
    case "update":
      return {
        method: "PATCH",
        path: `${thread}/artifacts/${fx.artifactId}`,
        body: { payload: { owner: caller, n: 2 } },
        headers,
      };
    case "merge":
      return {
        method: "PATCH",
        path: `${thread}/artifacts/${fx.artifactId}`,
        body: { payload: { owner: caller, n: 2 } },
        headers: { ...headers, "content-type": "application/merge-patch+json" },
      };
    case "remove":
      return { method: "DELETE", path: `${thread}/artifacts/${fx.artifactId}`, headers };
    case "list-threads":
      return { method: "GET", path: "/v1/threads?limit=200", headers };
    case "events":
      return { method: "GET", path: `${thread}/events`, headers };
    case "events (access_token)":
      return {
        method: "GET",
        path: `${thread}/events${token === undefined ? "" : `?access_token=${encodeURIComponent(token)}`}`,
        headers,
      };
    case "events of many threads":
      return { method: "GET", path: `/v1/events?threads=${fx.threadId},other-${fx.threadId}`, headers };
    case "read-thread as of a seq":
      return { method: "GET", path: `${thread}?atSeq=1`, headers };
    case "versions":
      return { method: "GET", path: `${thread}/artifacts/${fx.artifactId}/versions`, headers };
    case "fork":
      return { method: "POST", path: `${thread}/fork`, body: { threadId: forkOf(fx.threadId) }, headers };
    case "delete-thread":
      return { method: "DELETE", path: thread, headers };
  }
}

interface Credential {
  name: string;
  /** undefined: no token at all. */
  token: (owner: Tenant, intruder: Tenant) => Promise<string | undefined>;
  expect: "unauthorized" | "intruder" | "owner";
}

const CREDENTIALS: Credential[] = [
  { name: "no token", token: async () => undefined, expect: "unauthorized" },
  { name: "bad token", token: async () => "not-a-token-of-anyone-5a1e", expect: "unauthorized" },
  {
    name: "expired JWT",
    token: (owner) => signHs256(JWT_SECRET, { ...tenantClaims(owner), exp: nowSeconds() - 3600 }),
    expect: "unauthorized",
  },
  {
    name: "wrong-signature JWT",
    token: (owner) => signHs256("some-other-secret-entirely", { ...tenantClaims(owner), exp: nowSeconds() + 3600 }),
    expect: "unauthorized",
  },
  {
    name: "alg none JWT",
    token: async (owner) => unsignedJwt({ ...tenantClaims(owner), exp: nowSeconds() + 3600 }),
    expect: "unauthorized",
  },
  { name: "another tenant's valid token", token: (_owner, intruder) => tokenOf(intruder), expect: "intruder" },
  { name: "the right tenant's token", token: (owner) => tokenOf(owner), expect: "owner" },
];

/** Owners and intruders: each kind of token on each side. */
const PAIRS: Array<{ owner: Tenant; intruder: Tenant; label: string }> = [
  { owner: "tenant-alpha", intruder: "tenant-gamma", label: "static-token owner, JWT (tenant claim) intruder" },
  { owner: "tenant-delta", intruder: "tenant-beta", label: "JWT (sub) owner, static-token intruder" },
];

function expectNoLeak(result: HttpResult, fx: Fixture, what: string): void {
  const text = `${result.text}\n${[...result.headers].map(([k, v]) => `${k}: ${v}`).join("\n")}`;
  expect(text, what).not.toContain(fx.marker);
  expect(text, what).not.toContain(fx.owner);
  expect(text, what).not.toContain("secret-plan");
}

async function headOf(t: Target, fx: Fixture): Promise<{ seq: number; artifacts: any[] }> {
  const read = await send(t, {
    method: "GET",
    path: `/v1/threads/${fx.threadId}`,
    headers: bearer(await tokenOf(fx.owner)),
  });
  expect(read.status).toBe(200);
  return { seq: read.json.thread.rolloutSeq, artifacts: read.json.thread.artifacts };
}

/** The fixture's thread has exactly its one artifact at version 1 (nothing the call did reached it). */
async function expectUntouched(t: Target, fx: Fixture): Promise<void> {
  const head = await headOf(t, fx);
  expect(head.seq).toBe(1);
  expect(head.artifacts.map((a) => [a.id, a.version, a.payload])).toEqual([[fx.artifactId, 1, {
    owner: fx.owner,
    marker: fx.marker,
  }]]);
}

/**
 * The commits a call added or removed. Compaction objects are left out: derived, written
 * after an earlier write was answered, they may land during any later call (that they
 * stay under their tenant is checked below).
 */
function keyDiff(before: string[], after: string[]): { added: string[]; removed: string[] } {
  const commits = (keys: string[]) => keys.filter((key) => key.includes("/commits/"));
  const b = new Set(commits(before));
  const a = new Set(commits(after));
  return { added: [...a].filter((k) => !b.has(k)), removed: [...b].filter((k) => !a.has(k)) };
}

/** A thread id of the same length that exists for no tenant. */
function ghostOf(threadId: string): string {
  return `z${threadId.slice(1)}`;
}

const TARGETS: Array<[string, () => Promise<Target>]> = [
  ["app in process", () => inProcessTarget()],
  ["Node server process", nodeProcessTarget],
];

describe.each(TARGETS)("auth matrix: %s", (_name, makeTarget) => {
  let t: Target;

  beforeAll(async () => {
    t = await makeTarget();
  });

  afterAll(async () => {
    await t?.close();
  });

  describe.each(PAIRS)("$label", ({ owner, intruder }) => {
    it.each(ROUTES)(
      "%s: 401 for bad credentials, 404 (or its own data) for the other tenant, 2xx for the owner",
      async (route) => {
        for (const credential of CREDENTIALS) {
          const fx = await fixture(t, owner, route.replace(/\W+/g, "-"));
          const token = await credential.token(owner, intruder);
          const caller = credential.expect === "owner" ? owner : credential.expect === "intruder" ? intruder : "nobody";
          const keysBefore = await allKeys(t.store);
          const result = await send(t, requestFor(route, fx, token, caller), {
            firstEvent: credential.expect === "owner",
          });
          const diff = keyDiff(keysBefore, await allKeys(t.store));
          const what = `${route} with ${credential.name}`;
          // Only the owner's delete removes anything (its sweep, running after the answer): the owner's own thread.
          if (route === "delete-thread" && credential.expect === "owner") {
            for (const key of diff.removed) {
              expect(key, what).toMatch(new RegExp(`^tenants/${owner}/threads/${fx.threadId}/`));
            }
          } else expect(diff.removed, what).toEqual([]);

          if (credential.expect === "unauthorized") {
            expectProblem(result, 401, "unauthorized");
            expect(result.headers.get("www-authenticate"), what).toBe(
              token === undefined ? "Bearer" : 'Bearer error="invalid_token"',
            );
            expect(diff.added, what).toEqual([]);
            expectNoLeak(result, fx, what);
            await expectUntouched(t, fx);
            continue;
          }

          if (credential.expect === "intruder") {
            expectNoLeak(result, fx, what);
            switch (route) {
              case "create": {
                // Its own thread of the same name: seq 1, keys under its own tenant, the owner's untouched.
                expect(result.status, what).toBe(201);
                expect(result.json.thread).toEqual({ id: fx.threadId, rolloutSeq: 1 });
                expect(result.json.artifact.payload).toEqual({ owner: intruder, n: 1 });
                expect(diff.added.length).toBeGreaterThan(0);
                for (const key of diff.added) {
                  expect(key).toMatch(new RegExp(`^tenants/${intruder}/threads/${fx.threadId}/`));
                }
                break;
              }
              case "list-threads": {
                expect(result.status, what).toBe(200);
                expect(result.json.threads.map((th: any) => th.id)).not.toContain(fx.threadId);
                expect(diff.added).toEqual([]);
                break;
              }
              case "events":
              case "events (access_token)":
              case "events of many threads": {
                // A stream of a thread it does not have waits for its first artifact (isolation: below).
                expect(result.status, what).toBe(200);
                expect(result.headers.get("content-type")).toMatch(/^text\/event-stream/);
                expect(diff.added).toEqual([]);
                break;
              }
              default: {
                expectProblem(result, 404, "thread_not_found");
                expect(diff.added).toEqual([]);
                // Exactly as if it did not exist: the same answer as for a thread no one has.
                const ghost = ghostOf(fx.threadId);
                const absent = await send(
                  t,
                  requestFor(route, { threadId: ghost, artifactId: fx.artifactId }, token, intruder),
                );
                expect(blankRequestId(result.text)).toBe(blankRequestId(absent.text.replaceAll(ghost, fx.threadId)));
                expect(headerNames(result.headers)).toEqual(headerNames(absent.headers));
              }
            }
            await expectUntouched(t, fx);
            continue;
          }

          // The owner.
          switch (route) {
            case "create":
              expect(result.status, what).toBe(201);
              expect(result.json.thread).toEqual({ id: fx.threadId, rolloutSeq: 2 });
              break;
            case "read-thread":
              expect(result.status, what).toBe(200);
              expect(result.json.thread.artifacts.map((a: any) => a.payload.marker)).toEqual([fx.marker]);
              break;
            case "get-artifact":
              expect(result.status, what).toBe(200);
              expect(result.json.artifact).toMatchObject({ id: fx.artifactId, payload: { owner, marker: fx.marker } });
              break;
            case "update":
              expect(result.status, what).toBe(200);
              expect(result.json.artifact).toMatchObject({ id: fx.artifactId, version: 2, payload: { owner, n: 2 } });
              break;
            case "read-thread as of a seq":
              expect(result.status, what).toBe(200);
              expect(result.json.thread.artifacts.map((a: any) => a.payload.marker)).toEqual([fx.marker]);
              break;
            case "versions":
              expect(result.status, what).toBe(200);
              expect(result.json.versions.map((v: any) => v.artifact.payload.marker)).toEqual([fx.marker]);
              break;
            case "delete-thread":
              expect(result.status, what).toBe(200);
              expect(result.json).toEqual({ deleted: { threadId: fx.threadId, seq: 2 } });
              break;
            case "fork":
              expect(result.status, what).toBe(201);
              expect(result.json.thread.forkedFrom).toEqual({ threadId: fx.threadId, seq: 1 });
              expect(result.json.thread.artifacts.map((a: any) => a.payload.marker)).toEqual([fx.marker]);
              break;
            case "merge":
              expect(result.status, what).toBe(200);
              expect(result.json.artifact).toMatchObject({
                id: fx.artifactId,
                version: 2,
                payload: { owner, marker: fx.marker, n: 2 },
              });
              break;
            case "remove":
              expect(result.status, what).toBe(200);
              expect(result.json.removed).toEqual({ id: fx.artifactId, seq: 2 });
              break;
            case "list-threads": {
              expect(result.status, what).toBe(200);
              const ids = result.json.threads.map((th: any) => th.id);
              expect(ids).toContain(fx.threadId);
              for (const thread of result.json.threads) {
                for (const a of thread.artifacts) expect(a.payload.owner).toBe(owner);
              }
              break;
            }
            case "events":
            case "events (access_token)":
            case "events of many threads":
              expect(result.status, what).toBe(200);
              expect(result.firstUpdate).toMatchObject({
                threadId: fx.threadId,
                seq: 1,
                op: "add",
                artifact: { id: fx.artifactId },
              });
              break;
          }
          // A fork writes the new thread only, under the owner's tenant.
          const written = route === "fork" ? forkOf(fx.threadId) : fx.threadId;
          for (const key of diff.added) expect(key).toMatch(new RegExp(`^tenants/${owner}/threads/${written}/`));
          if (
            route === "create" || route === "update" || route === "merge" || route === "remove" || route === "fork" ||
            route === "delete-thread"
          ) {
            expect(diff.added.length).toBeGreaterThan(0);
          } else expect(diff.added).toEqual([]);
        }
      },
    );
  });

  describe("isolation between tenants", () => {
    it("lists only the caller's threads, page by page, and refuses another tenant's cursor", async () => {
      const alpha = await fixture(t, "tenant-alpha", "list");
      const gamma = await fixture(t, "tenant-gamma", "list");
      // gamma also has a thread with alpha's thread id: it lists its own content under that id.
      const sameName = await send(t, {
        method: "POST",
        path: `/v1/threads/${alpha.threadId}/artifacts`,
        body: { artifactType: "note", payload: { owner: "tenant-gamma" } },
        headers: bearer(await tokenOf("tenant-gamma")),
      });
      expect(sameName.status).toBe(201);

      for (const tenant of ["tenant-alpha", "tenant-gamma"] as const) {
        const seen: any[] = [];
        let cursor: string | null = null;
        let firstCursor: string | null = null;
        for (let page = 0; page < 500; page++) {
          const query: string = cursor === null ? "?limit=1" : `?limit=1&cursor=${encodeURIComponent(cursor)}`;
          const result = await send(t, {
            method: "GET",
            path: `/v1/threads${query}`,
            headers: bearer(await tokenOf(tenant)),
          });
          expect(result.status).toBe(200);
          seen.push(...result.json.threads);
          cursor = result.json.nextCursor;
          firstCursor ??= cursor;
          if (cursor === null) break;
        }
        expect(cursor).toBeNull();
        for (const thread of seen) for (const a of thread.artifacts) expect(a.payload.owner).toBe(tenant);
        const ids = seen.map((th) => th.id);
        expect(ids).toContain(alpha.threadId);
        expect(ids.includes(gamma.threadId)).toBe(tenant === "tenant-gamma");
        const text = JSON.stringify(seen);
        expect(text.includes(alpha.marker)).toBe(tenant === "tenant-alpha");
        expect(text.includes(gamma.marker)).toBe(tenant === "tenant-gamma");

        // A cursor is bound to the tenant it was issued to.
        expect(firstCursor).not.toBeNull();
        const other = tenant === "tenant-alpha" ? "tenant-gamma" : "tenant-alpha";
        const foreign = await send(t, {
          method: "GET",
          path: `/v1/threads?limit=1&cursor=${encodeURIComponent(firstCursor as string)}`,
          headers: bearer(await tokenOf(other)),
        });
        expectProblem(foreign, 400, "invalid_request");
        expect(foreign.text).not.toContain(tenant);
      }
    });

    it("never sends one tenant's events to another tenant subscribed to the same thread id", async () => {
      const threadId = `events-iso-${crypto.randomUUID().slice(0, 8)}`;
      const write = async (tenant: Tenant, n: number) => {
        const created = await send(t, {
          method: "POST",
          path: `/v1/threads/${threadId}/artifacts`,
          body: { artifactType: "note", payload: { owner: tenant, n } },
          headers: bearer(await tokenOf(tenant)),
        });
        expect(created.status).toBe(201);
        return created.json.artifact.id as string;
      };
      const open = async (tenant: Tenant, viaQuery: boolean) => {
        const token = await tokenOf(tenant);
        const path = `/v1/threads/${threadId}/events${viaQuery ? `?access_token=${encodeURIComponent(token)}` : ""}`;
        const response = await t.fetch(path, { headers: viaQuery ? {} : bearer(token) });
        expect(response.status).toBe(200);
        return new SseReader(response.body as ReadableStream<Uint8Array>);
      };

      const alphaIds = [await write("tenant-alpha", 1), await write("tenant-alpha", 2), await write("tenant-alpha", 3)];
      const alphaStream = await open("tenant-alpha", false);
      const gammaStreams = [await open("tenant-gamma", false), await open("tenant-gamma", true)];
      const gammaFirst = await write("tenant-gamma", 1);
      alphaIds.push(await write("tenant-alpha", 4));
      const gammaSecond = await write("tenant-gamma", 2);
      try {
        for (const stream of gammaStreams) {
          await stream.until(() => stream.updates.some((u) => u.seq >= 2), "gamma's second event");
          expect(stream.updates.map((u) => [u.seq, u.artifact.id, u.artifact.payload.owner])).toEqual([
            [1, gammaFirst, "tenant-gamma"],
            [2, gammaSecond, "tenant-gamma"],
          ]);
        }
        await alphaStream.until(() => alphaStream.updates.some((u) => u.seq >= 4), "alpha's fourth event");
        expect(alphaStream.updates.map((u) => [u.seq, u.artifact.id, u.artifact.payload.owner])).toEqual(
          alphaIds.map((id, i) => [i + 1, id, "tenant-alpha"]),
        );
      } finally {
        await Promise.all([alphaStream.close(), ...gammaStreams.map((s) => s.close())]);
      }
    });

    it("answers another tenant's artifact id in a same-named thread exactly as a random id: 404 artifact_not_found", async () => {
      const fx = await fixture(t, "tenant-delta", "artifact-iso");
      const betaToken = await tokenOf("tenant-beta");
      const own = await send(t, {
        method: "POST",
        path: `/v1/threads/${fx.threadId}/artifacts`,
        body: { artifactType: "note", payload: { owner: "tenant-beta" } },
        headers: bearer(betaToken),
      });
      expect(own.status).toBe(201);
      const randomId = crypto.randomUUID();
      const keysBefore = await allKeys(t.store);
      for (
        const [method, body, extra] of [
          ["GET", undefined, {}],
          ["PATCH", { payload: { owner: "tenant-beta", x: 1 } }, {}],
          ["PATCH", { payload: { owner: "tenant-beta", x: 1 } }, { "if-match": '"1"' }],
          ["DELETE", undefined, {}],
          ["DELETE", undefined, { "if-match": "*" }],
        ] as const
      ) {
        const call = (id: string) =>
          send(t, {
            method,
            path: `/v1/threads/${fx.threadId}/artifacts/${id}`,
            ...(body ? { body } : {}),
            headers: { ...bearer(betaToken), ...extra },
          });
        const foreign = await call(fx.artifactId);
        const absent = await call(randomId);
        expectProblem(foreign, 404, "artifact_not_found");
        expect(blankRequestId(foreign.text)).toBe(blankRequestId(absent.text.replaceAll(randomId, fx.artifactId)));
        expect(headerNames(foreign.headers)).toEqual(headerNames(absent.headers));
        expect(foreign.text).not.toContain(fx.marker);
        expect(foreign.text).not.toContain("tenant-delta");
      }
      expect(await allKeys(t.store)).toEqual(keysBefore);
      await expectUntouched(t, fx);
    });

    it("takes ?access_token= on the events route only", async () => {
      const fx = await fixture(t, "tenant-alpha", "access-token");
      const token = await tokenOf("tenant-alpha");
      const q = `access_token=${encodeURIComponent(token)}`;
      const keysBefore = await allKeys(t.store);
      for (
        const call of [
          { method: "GET", path: `/v1/threads/${fx.threadId}?${q}` },
          { method: "GET", path: `/v1/threads/${fx.threadId}/artifacts/${fx.artifactId}?${q}` },
          { method: "GET", path: `/v1/threads?${q}` },
          {
            method: "POST",
            path: `/v1/threads/${fx.threadId}/artifacts?${q}`,
            body: { artifactType: "x", payload: { owner: "tenant-alpha" } },
          },
          {
            method: "PATCH",
            path: `/v1/threads/${fx.threadId}/artifacts/${fx.artifactId}?${q}`,
            body: { payload: { owner: "tenant-alpha" } },
          },
          { method: "DELETE", path: `/v1/threads/${fx.threadId}/artifacts/${fx.artifactId}?${q}` },
        ]
      ) {
        const result = await send(t, call);
        expectProblem(result, 401, "unauthorized");
        expect(result.headers.get("www-authenticate")).toBe("Bearer");
        expect(result.text).not.toContain(token);
      }
      expect(await allKeys(t.store)).toEqual(keysBefore);
      await expectUntouched(t, fx);

      const events = await send(t, { method: "GET", path: `/v1/threads/${fx.threadId}/events?${q}` }, {
        firstEvent: true,
      });
      expect(events.status).toBe(200);
      expect(events.firstUpdate.artifact.id).toBe(fx.artifactId);
      // A bad header is not rescued by a good query token, and a bad query token is refused.
      const badHeader = await send(t, {
        method: "GET",
        path: `/v1/threads/${fx.threadId}/events?${q}`,
        headers: bearer("nope-nope"),
      });
      expectProblem(badHeader, 401, "unauthorized");
      const badQuery = await send(t, {
        method: "GET",
        path: `/v1/threads/${fx.threadId}/events?access_token=nope-nope`,
      });
      expectProblem(badQuery, 401, "unauthorized");
      expect(badQuery.headers.get("www-authenticate")).toBe('Bearer error="invalid_token"');
    });
  });

  describe("webhooks (API.md Webhooks): every route x every credential", () => {
    it.each(WEBHOOK_ROUTES)(
      "%s: 401 for bad credentials, 404 webhook_not_found for the other tenant (as for an absent id), 2xx for the owner",
      async (route) => {
        for (const { owner, intruder } of PAIRS) {
          for (const credential of CREDENTIALS) {
            const fx = await webhookFixture(t, owner);
            const token = await credential.token(owner, intruder);
            const what = `webhook ${route} with ${credential.name}`;
            const before = await webhookObjects(t.store);
            const result = await send(t, webhookRequest(route, fx.id, token, fx.threadId));
            const after = await webhookObjects(t.store);
            const added = Object.keys(after).filter((key) => !(key in before));
            const changed = Object.keys(before).filter((key) => after[key] !== before[key]);
            expectNoWebhookLeak(result, fx, credential.expect, what);

            if (credential.expect === "unauthorized") {
              expectProblem(result, 401, "unauthorized");
              expect(result.headers.get("www-authenticate"), what).toBe(
                token === undefined ? "Bearer" : 'Bearer error="invalid_token"',
              );
              expect({ added, changed }, what).toEqual({ added: [], changed: [] });
              continue;
            }

            if (credential.expect === "intruder") {
              if (route === "create") {
                // Its own subscription, under its own tenant only.
                expect(result.status, what).toBe(201);
                expect(changed, what).toEqual([]);
                expect(added.length, what).toBe(2);
                for (const key of added) {
                  expect(key, what).toMatch(new RegExp(`^(tenants/${intruder}/webhooks/|webhooks/${intruder}/)`));
                }
              } else if (route === "list") {
                expect(result.status, what).toBe(200);
                expect(result.json.webhooks.map((w: any) => w.id), what).not.toContain(fx.id);
                expect({ added, changed }, what).toEqual({ added: [], changed: [] });
              } else {
                expectProblem(result, 404, "webhook_not_found");
                expect({ added, changed }, what).toEqual({ added: [], changed: [] });
                // Exactly as if it did not exist.
                const ghost = `wh_${"f".repeat(32)}`;
                const absent = await send(t, webhookRequest(route, ghost, token, fx.threadId));
                expect(blankRequestId(result.text), what).toBe(blankRequestId(absent.text.replaceAll(ghost, fx.id)));
                expect(headerNames(result.headers), what).toEqual(headerNames(absent.headers));
              }
              await expectWebhookUntouched(t, fx);
              continue;
            }

            // The owner.
            const ownKeys = new RegExp(`^(tenants/${owner}/webhooks/|webhooks/${owner}/)`);
            for (const key of [...added, ...changed]) expect(key, what).toMatch(ownKeys);
            switch (route) {
              case "create":
                expect(result.status, what).toBe(201);
                expect(result.json.webhook.secret, what).toMatch(/^whsec_/);
                expect(added.length, what).toBe(2);
                break;
              case "list":
                expect(result.status, what).toBe(200);
                expect(result.json.webhooks.map((w: any) => w.id), what).toContain(fx.id);
                // Every one of them is the owner's own.
                for (const w of result.json.webhooks) {
                  expect(await t.store.exists(`tenants/${owner}/webhooks/${w.id}.json`), what).toBe(true);
                }
                expect([...added, ...changed], what).toEqual([]);
                break;
              case "get":
                expect(result.status, what).toBe(200);
                expect(result.json.webhook.description, what).toBe(fx.marker);
                expect([...added, ...changed], what).toEqual([]);
                break;
              case "update":
                expect(result.status, what).toBe(200);
                expect(result.json.webhook).toMatchObject({ id: fx.id, status: "paused" });
                expect(changed, what).toEqual([`tenants/${owner}/webhooks/${fx.id}.json`]);
                break;
              case "delete":
                expect(result.status, what).toBe(204);
                expect(Object.keys(after).filter((key) => key.includes(fx.id)), what).toEqual([]);
                break;
              case "rotate-secret":
                expect(result.status, what).toBe(200);
                expect(result.json.webhook.secret, what).toMatch(/^whsec_/);
                expect(result.json.webhook.secret, what).not.toBe(fx.secret);
                expect(changed, what).toEqual([`tenants/${owner}/webhooks/${fx.id}.json`]);
                break;
              case "deliveries":
                expect(result.status, what).toBe(200);
                expect(Array.isArray(result.json.deliveries), what).toBe(true);
                expect([...added, ...changed], what).toEqual([]);
                break;
              case "replay":
                expect(result.status, what).toBe(202);
                expect(result.json.replay).toEqual({ webhookId: fx.id, threadId: fx.threadId, since: 0 });
                break;
            }
          }
        }
      },
    );
  });

  it("keeps every tenant's rollout keys under tenants/<tenant>/ and its cache rows under its tenant", async () => {
    const keys = await allKeys(t.store);
    const tenantsSeen = new Set<string>();
    for (const key of keys) {
      const webhook = WEBHOOK_KEY.exec(key);
      if (webhook) {
        // A subscription (or its cursor) under its own tenant, naming that tenant.
        const body = (await t.store.get(key)) as string;
        if (key.endsWith(".json")) expect(JSON.parse(body).tenant, key).toBe(webhook[1]);
        continue;
      }
      const match = ROLLOUT_KEY.exec(key);
      expect(match, key).not.toBeNull();
      const tenant = (match as RegExpExecArray)[1] as string;
      tenantsSeen.add(tenant);
      const body = (await t.store.get(key)) as string;
      // Every payload this suite wrote names its tenant: no object may hold another's.
      for (const other of TENANTS) {
        if (other !== tenant) expect(body.includes(`"owner":"${other}"`), `${key} holds ${other}'s data`).toBe(false);
      }
      if ((match as RegExpExecArray)[3]?.startsWith("commits/")) {
        const stored = JSON.parse(body);
        // A deleted life's commit is a stub: its seqs and its tombstone, no user data at all.
        if ("tombstone" in stored) {
          expect(Object.keys(stored).sort()).toEqual(["firstSeq", "lastSeq", "tombstone", "v"]);
          continue;
        }
        // A tombstone (a delete) carries no artifact.
        for (const patch of stored.patches) {
          if (patch.op !== "delete") expect(patch.artifact.payload.owner).toBe(tenant);
        }
      }
    }
    expect([...tenantsSeen].sort()).toEqual([...TENANTS].sort());
    expect(keys.some((key) => key.includes("/deltas/"))).toBe(true);

    const client = createClient({ url: t.libsqlUrl });
    try {
      const artifacts = await client.execute("SELECT tenant, body FROM artifacts");
      const events = await client.execute("SELECT tenant, data FROM events");
      expect(artifacts.rows.length).toBeGreaterThan(0);
      expect(events.rows.length).toBeGreaterThan(0);
      for (const row of artifacts.rows) expect(JSON.parse(String(row.body)).payload.owner).toBe(String(row.tenant));
      for (const row of events.rows) {
        const data = JSON.parse(String(row.data));
        // A thread-deleted event names only its thread and seq.
        if (data.artifact) expect(data.artifact.payload.owner).toBe(String(row.tenant));
        else expect(Object.keys(data).sort()).toEqual(["seq", "threadId"]);
      }
      const threads = await client.execute("SELECT DISTINCT tenant FROM threads");
      expect(threads.rows.map((r) => String(r.tenant)).sort()).toEqual([...TENANTS].sort());
    } finally {
      client.close();
    }
  });
});

type WebhookRoute = "create" | "list" | "get" | "update" | "delete" | "rotate-secret" | "deliveries" | "replay";
const WEBHOOK_ROUTES: WebhookRoute[] = [
  "create",
  "list",
  "get",
  "update",
  "delete",
  "rotate-secret",
  "deliveries",
  "replay",
];

interface WebhookFixture {
  owner: Tenant;
  id: string;
  secret: string;
  threadId: string;
  marker: string;
  view: unknown;
}

/**
 * A fresh subscription of `owner` whose description and URL carry a marker no one else
 * knows. A literal public address (no DNS in tests), following one thread nothing writes
 * to: no delivery is ever due.
 */
async function webhookFixture(t: Target, owner: Tenant): Promise<WebhookFixture> {
  const marker = `marker-${owner}-${crypto.randomUUID()}`;
  const threadId = `never-written-${crypto.randomUUID().slice(0, 8)}`;
  const created = await send(t, {
    method: "POST",
    path: "/v1/webhooks",
    body: { url: `https://93.184.215.14/${marker}`, threads: [threadId], description: marker },
    headers: bearer(await tokenOf(owner)),
  });
  expect(created.status, created.text).toBe(201);
  const { secret, ...view } = created.json.webhook;
  return { owner, id: view.id, secret, threadId, marker, view };
}

function webhookRequest(route: WebhookRoute, id: string, token: string | undefined, threadId = "never-written"): Call {
  const headers = token === undefined ? {} : bearer(token);
  const path = `/v1/webhooks/${id}`;
  switch (route) {
    case "create":
      return { method: "POST", path: "/v1/webhooks", body: { url: "https://93.184.215.14/intruder" }, headers };
    case "list":
      return { method: "GET", path: "/v1/webhooks?limit=200", headers };
    case "get":
      return { method: "GET", path, headers };
    case "update":
      return { method: "PATCH", path, body: { status: "paused" }, headers };
    case "delete":
      return { method: "DELETE", path, headers };
    case "rotate-secret":
      return { method: "POST", path: `${path}/rotate-secret`, headers };
    case "deliveries":
      return { method: "GET", path: `${path}/deliveries`, headers };
    case "replay":
      return { method: "POST", path: `${path}/replay`, body: { threadId, since: 0 }, headers };
  }
}

/** The registry's objects (subscriptions, cursors, index), keys and bodies; dispatchers' leases left out. */
async function webhookObjects(store: BlobStore): Promise<Record<string, string | null>> {
  const keys = [
    ...(await allKeys(store)).filter((key) => WEBHOOK_KEY.test(key)),
    ...(await store.list("webhooks/", { limit: 10_000 })),
  ];
  const objects: Record<string, string | null> = {};
  for (const key of keys) objects[key] = await store.get(key);
  return objects;
}

/** No answer shows the fixture's secret; none but the owner's shows its marker or its tenant. */
function expectNoWebhookLeak(result: HttpResult, fx: WebhookFixture, caller: Credential["expect"], what: string): void {
  expect(result.text, what).not.toContain(fx.secret);
  if (caller === "owner") return;
  expect(result.text, what).not.toContain(fx.marker);
  expect(result.text, what).not.toContain(fx.owner);
}

/** The fixture reads back exactly as created, secret included (nothing the call did reached it). */
async function expectWebhookUntouched(t: Target, fx: WebhookFixture): Promise<void> {
  const read = await send(t, {
    method: "GET",
    path: `/v1/webhooks/${fx.id}`,
    headers: bearer(await tokenOf(fx.owner)),
  });
  expect(read.status).toBe(200);
  expect(read.json.webhook).toEqual(fx.view);
  const stored = JSON.parse((await t.store.get(`tenants/${fx.owner}/webhooks/${fx.id}.json`)) as string);
  expect(stored.secret).toBe(fx.secret);
}

/** The registry's keys under `tenants/` (API.md "Webhooks": subscriptions are durable in the rollout store). */
const WEBHOOK_KEY = /^tenants\/([^/]+)\/webhooks\/(wh_[0-9a-f]{32})(\.json|\/cursors\/[^/]+)$/;

/** A problem body with its request id (every request's own) blanked, to compare two answers. */
function blankRequestId(text: string): string {
  return text.replace(/"requestId":"[^"]*"/, '"requestId":"-"');
}

function headerNames(headers: Headers): string[] {
  return [...headers.keys()].filter((name) => name !== "date" && name !== "content-length").sort();
}

describe("JWT claims, times and algorithms", () => {
  let t: Target;

  beforeAll(async () => {
    t = await inProcessTarget();
  });

  afterAll(async () => {
    await t?.close();
  });

  async function status(token: string): Promise<{ status: number; tenant?: string }> {
    const threadId = `claims-${crypto.randomUUID().slice(0, 8)}`;
    const result = await send(t, {
      method: "POST",
      path: `/v1/threads/${threadId}/artifacts`,
      body: { artifactType: "note", payload: { owner: "whoever" } },
      headers: bearer(token),
    });
    if (result.status === 401) expectProblem(result, 401, "unauthorized");
    if (result.status !== 201) return { status: result.status };
    // Which tenant it landed in: the rollout key says.
    const keys = (await allKeys(t.store)).filter((k) => k.includes(`/threads/${threadId}/`));
    return { status: 201, tenant: (ROLLOUT_KEY.exec(keys[0] as string) as RegExpExecArray)[1] as string };
  }

  it("refuses a tenant claim (or sub) that is not a safe id, and never falls back to sub when tenant is present", async () => {
    const exp = nowSeconds() + 3600;
    for (
      const tenant of [
        "../x",
        "",
        "..",
        ".hidden",
        "a/b",
        "a\\b",
        "tenants/x",
        "x".repeat(129),
        "with space",
        "ümlaut",
        "a\u0000b",
        42,
        null,
        true,
        {},
        ["tenant-alpha"],
      ]
    ) {
      const result = await status(await signHs256(JWT_SECRET, { tenant, sub: "fine-sub", exp }));
      expect(result.status, `tenant ${JSON.stringify(tenant)}`).toBe(401);
    }
    for (const sub of ["../x", "", "a/b", 7]) {
      expect((await status(await signHs256(JWT_SECRET, { sub, exp }))).status, `sub ${JSON.stringify(sub)}`).toBe(401);
    }
    expect((await status(await signHs256(JWT_SECRET, { exp }))).status).toBe(401);
    // The tenant claim wins over sub; sub is used only without one.
    expect(await status(await signHs256(JWT_SECRET, { tenant: "tenant-gamma", sub: "../bad", exp }))).toEqual({
      status: 201,
      tenant: "tenant-gamma",
    });
    expect(await status(await signHs256(JWT_SECRET, { sub: "tenant-delta", exp }))).toEqual({
      status: 201,
      tenant: "tenant-delta",
    });
    // A JWT may name a tenant that static tokens also serve: same tenant, same data.
    expect(await status(await signHs256(JWT_SECRET, { tenant: "tenant-alpha", exp }))).toEqual({
      status: 201,
      tenant: "tenant-alpha",
    });
  });

  it("honours exp and nbf with the default 60 s skew", async () => {
    const now = nowSeconds();
    const claims = { tenant: "tenant-gamma" };
    expect((await status(await signHs256(JWT_SECRET, { ...claims, exp: now - 30 }))).status).toBe(201);
    expect((await status(await signHs256(JWT_SECRET, { ...claims, exp: now - 120 }))).status).toBe(401);
    expect((await status(await signHs256(JWT_SECRET, { ...claims, nbf: now + 30, exp: now + 3600 }))).status).toBe(201);
    expect((await status(await signHs256(JWT_SECRET, { ...claims, nbf: now + 120, exp: now + 3600 }))).status).toBe(
      401,
    );
    for (const exp of [String(now + 3600), null, "never", Number.NaN]) {
      expect((await status(await signHs256(JWT_SECRET, { ...claims, exp }))).status, `exp ${String(exp)}`).toBe(401);
    }
    expect((await status(await signHs256(JWT_SECRET, { ...claims, nbf: "0" }))).status).toBe(401);
  });

  it("uses AUTH_CLOCK_SKEW_SECONDS: with 0, a token expired 30 s ago fails", async () => {
    const strict = await inProcessTarget({ ...ENV, AUTH_CLOCK_SKEW_SECONDS: "0" });
    try {
      const now = nowSeconds();
      const post = async (claims: Record<string, unknown>) =>
        (
          await send(strict, {
            method: "POST",
            path: `/v1/threads/skew-${crypto.randomUUID().slice(0, 8)}/artifacts`,
            body: { artifactType: "note", payload: 1 },
            headers: bearer(await signHs256(JWT_SECRET, { tenant: "tenant-gamma", ...claims })),
          })
        ).status;
      expect(await post({ exp: now - 30 })).toBe(401);
      expect(await post({ nbf: now + 30 })).toBe(401);
      expect(await post({ exp: now + 3600 })).toBe(201);
    } finally {
      await strict.close();
    }
  });

  it("puts the exp/nbf edges exactly at the skew (Authenticator on a fixed clock)", async () => {
    const T = 1_900_000_000;
    const auth = new Authenticator(
      { tokens: new Map(), jwtSecret: JWT_SECRET, jwksUrl: undefined, clockSkewSeconds: 60 },
      { now: () => T * 1000 + 999 },
    );
    const tenantOf = async (claims: Record<string, unknown>) =>
      auth.tenantOf(await signHs256(JWT_SECRET, { tenant: "tenant-gamma", ...claims }));
    expect(await tenantOf({ exp: T - 59 })).toBe("tenant-gamma");
    expect(await tenantOf({ exp: T - 60 })).toBeNull();
    expect(await tenantOf({ nbf: T + 60 })).toBe("tenant-gamma");
    expect(await tenantOf({ nbf: T + 61 })).toBeNull();
  });

  it("refuses alg none in every spelling, and a valid signature under another alg header", async () => {
    const claims = { tenant: "tenant-gamma", exp: nowSeconds() + 3600 };
    const valid = await signHs256(JWT_SECRET, claims);
    const validSignature = valid.split(".")[2] as string;
    for (const alg of ["none", "None", "NONE", "nOnE", "", null]) {
      expect((await status(unsignedJwt(claims, { alg, typ: "JWT" }))).status, `alg ${String(alg)}`).toBe(401);
      expect((await status(unsignedJwt(claims, { alg, typ: "JWT" }, validSignature))).status).toBe(401);
    }
    expect((await status(unsignedJwt(claims, { typ: "JWT" }))).status).toBe(401);
    // The HS256 signature of the same input, under a header that says HS512 or RS256.
    for (const alg of ["HS512", "HS384", "RS256", "ES256", "hs256"]) {
      const header = { alg, typ: "JWT" };
      const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
      const key = await crypto.subtle.importKey(
        "raw",
        new TextEncoder().encode(JWT_SECRET),
        { name: "HMAC", hash: "SHA-256" },
        false,
        ["sign"],
      );
      const signature = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input)));
      expect((await status(`${input}.${base64url(signature)}`)).status, `alg ${alg}`).toBe(401);
    }
    expect((await status(valid)).status).toBe(201);
    // Garbage shaped like a JWT never 5xx.
    for (
      const token of ["a.b.c", "..", "a.b", "a.b.c.d", `${valid}.`, `${valid.slice(0, -2)}`, valid.replace(/\./g, "..")]
    ) {
      expect((await status(token)).status, token).toBe(401);
    }
  });

  it("refuses an RS256 token when only HS256 is configured", async () => {
    const key = await generateSigningKey("RS256", "rsa-1");
    const token = await signWithKey(key, { tenant: "tenant-gamma", exp: nowSeconds() + 3600 });
    expect((await status(token)).status).toBe(401);
    const ec = await generateSigningKey("ES256", "ec-1");
    expect((await status(await signWithKey(ec, { tenant: "tenant-gamma", exp: nowSeconds() + 3600 }))).status).toBe(
      401,
    );
  });

  it("refuses algorithm confusion: HS256 signed with the RSA public key when only JWKS is configured", async () => {
    const rsa = await generateSigningKey("RS256", "rsa-confusion");
    const jwks = await startJwksServer([rsa.jwk, {
      kty: "oct",
      k: base64url("shared-secret-in-jwks"),
      kid: "oct-1",
      alg: "HS256",
    }]);
    const jwksOnly = await inProcessTarget({ AUTH_JWKS_URL: jwks.url });
    try {
      const post = async (token: string) => {
        const result = await send(jwksOnly, {
          method: "POST",
          path: `/v1/threads/confusion-${crypto.randomUUID().slice(0, 8)}/artifacts`,
          body: { artifactType: "note", payload: 1 },
          headers: bearer(token),
        });
        if (result.status !== 201) expectProblem(result, 401, "unauthorized");
        return result.status;
      };
      const claims = { tenant: "tenant-gamma", exp: nowSeconds() + 3600 };
      expect(await post(await signWithKey(rsa, claims))).toBe(201);
      const pem = await publicKeyPem(rsa);
      const secrets: Array<string | Uint8Array<ArrayBuffer>> = [
        pem,
        pem.trim(),
        JSON.stringify(rsa.jwk),
        rsa.jwk.n as string,
        base64UrlBytes(rsa.jwk.n as string),
      ];
      for (const secret of secrets) {
        for (const header of [{ kid: "rsa-confusion" }, {}]) {
          expect(await post(await signHs256(secret, claims, header))).toBe(401);
        }
      }
      // A symmetric key published in the JWKS is never used either.
      expect(await post(await signHs256("shared-secret-in-jwks", claims, { kid: "oct-1" }))).toBe(401);
      expect(await post(unsignedJwt(claims, { alg: "none", kid: "rsa-confusion" }))).toBe(401);
    } finally {
      await jwksOnly.close();
      await jwks.close();
    }
  });
});

function base64UrlBytes(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}
