// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import type { BlobStore, ListOptions, PutIfAbsentResult } from "../../src/blob/port.ts";
import { PROBLEM_CODES } from "../http/contract.ts";
import { createTestApp } from "../support/in-process.ts";
import { ROLLOUT_KEY } from "./helpers.ts";

/**
 * Generated requests against the app in process (fast-check; at least 10,000 in all,
 * split over four properties). Every request is checked for: no 5xx; every error is
 * problem+json with a code of API.md; a rejected request stores nothing (the BlobStore
 * saw no write while it ran); an accepted write stores only under its own tenant and
 * thread (a webhook call: only its tenant's registry keys, the secret shown only on
 * create and rotate); accepted payloads come back byte-for-byte as JSON (`__proto__` keys
 * included, as plain data); and nothing touches Object.prototype.
 */

const TOKENS = { "tenant-a": "fuzz-token-of-tenant-a-0c5e", "tenant-b": "fuzz-token-of-tenant-b-93d1" } as const;
type Tenant = keyof typeof TOKENS;
const TENANTS = Object.keys(TOKENS) as Tenant[];
const MAX_PAYLOAD_BYTES = 4096;
const BODY_BOUND = MAX_PAYLOAD_BYTES + 16 * 1024;
const PUBLIC_PATHS = new Set(["/", "/healthz", "/v1/openapi.json"]);
const MAX_WEBHOOKS = 5;
/** The registry's keys: a subscription, a cursor, an index entry (src/webhooks/registry.ts). */
const WEBHOOK_KEY =
  /^(?:tenants\/([^/]+)\/webhooks\/wh_[0-9a-f]{32}(?:\.json|\/cursors\/[^/]+)|webhooks\/([^/]+)\/wh_[0-9a-f]{32})$/;

/** Records every write, so "this request stored nothing" is exact. */
class RecordingStore implements BlobStore {
  readonly inner = new MemoryBlobStore();
  /** Keys written since the last `take()`. */
  #written: string[] = [];
  readonly everyKey = new Set<string>();

  take(): string[] {
    const written = this.#written;
    this.#written = [];
    return written;
  }

  get(key: string): Promise<string | null> {
    return this.inner.get(key);
  }

  async putIfAbsent(key: string, body: string): Promise<PutIfAbsentResult> {
    const result = await this.inner.putIfAbsent(key, body);
    if (result === "created") {
      this.#written.push(key);
      this.everyKey.add(key);
    }
    return result;
  }

  async put(key: string, body: string): Promise<void> {
    await this.inner.put(key, body);
    this.#written.push(key);
    this.everyKey.add(key);
  }

  exists(key: string): Promise<boolean> {
    return this.inner.exists(key);
  }

  /** Deletes (a thread's sweep) are recorded as `-key`. */
  async delete(key: string): Promise<void> {
    await this.inner.delete(key);
    this.#written.push(`-${key}`);
    this.everyKey.delete(key);
  }

  list(prefix: string, options?: ListOptions): Promise<string[]> {
    return this.inner.list(prefix, options);
  }
}

interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array<ArrayBuffer>;
  /** The tenant whose valid token is in Authorization; null for none or garbage. */
  tenant: Tenant | null;
}

type TestApp = ReturnType<typeof createTestApp>;

let app: TestApp;
let store: RecordingStore;
let sent = 0;
let accepted = 0;
/** Answers by status, per kind of request the last two properties aim at (so each is seen both accepted and refused). */
const outcomes = {
  merge: new Map<number, number>(),
  many: new Map<number, number>(),
  webhooks: new Map<number, number>(),
};
function count(kind: keyof typeof outcomes, status: number): void {
  outcomes[kind].set(status, (outcomes[kind].get(status) ?? 0) + 1);
}
/** Keys written by accepted (2xx) requests. */
const acceptedKeys = new Set<string>();
/** Artifacts created so far, for updates and removes to aim at. */
const pool: Array<{ tenant: Tenant; threadId: string; id: string }> = [];
/** Webhooks created so far (deleted ones stay: aiming at them is a 404). */
const webhookPool: Array<{ tenant: Tenant; id: string }> = [];

const protoBefore = {
  object: Object.getOwnPropertyNames(Object.prototype).sort(),
  array: Object.getOwnPropertyNames(Array.prototype).sort(),
  objectValues: Object.getOwnPropertyNames(Object.prototype).map((name) =>
    Object.getOwnPropertyDescriptor(Object.prototype, name)?.value
  ),
};

beforeAll(() => {
  store = new RecordingStore();
  app = createTestApp({
    env: {
      AUTH_TOKENS: TENANTS.map((t) => `${TOKENS[t]}:${t}`).join(","),
      MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD_BYTES),
      MAX_ARTIFACTS_PER_THREAD: "40",
      COMPACT_EVERY: "7",
      // Thousands of requests as fast as they go: the fuzz is about inputs, not rates (limits have their own tests).
      RATE_LIMIT_WRITES: "0",
      RATE_LIMIT_READS: "0",
      MAX_STREAMS_PER_TENANT: "0",
      // Low enough that the fuzz meets it, high enough that creates mostly land.
      MAX_WEBHOOKS_PER_TENANT: String(MAX_WEBHOOKS),
    },
    blobStore: store,
    // Names under example.com are public; every other name does not resolve (no DNS in tests).
    resolve: async (hostname) => {
      if (hostname === "hooks.example.com" || hostname.endsWith(".hooks.example.com")) return ["93.184.215.14"];
      if (hostname === "internal.example.com") return ["10.0.0.7"];
      throw new Error(`ENOTFOUND ${hostname}`);
    },
  });
});

afterAll(() => {
  app?.close();
});

function parseJson(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function bodyText(body: string | Uint8Array<ArrayBuffer> | undefined): string | undefined {
  if (body === undefined) return undefined;
  if (typeof body === "string") return body;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(body);
  } catch {
    return undefined;
  }
}

function hasNonFiniteNumber(value: unknown): boolean {
  const stack: unknown[] = [value];
  for (let steps = 0; stack.length > 0 && steps < 1_000_000; steps++) {
    const item = stack.pop();
    if (typeof item === "number" && !Number.isFinite(item)) return true;
    if (item !== null && typeof item === "object") stack.push(...Object.values(item));
  }
  return false;
}

/** JSON text with object keys sorted, built as a string (no object is assembled from untrusted keys). */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${
      Object.keys(value)
        .sort()
        .map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, unknown>)[key])}`)
        .join(",")
    }}`;
  }
  return JSON.stringify(value);
}

function describeRequest(req: FuzzRequest): string {
  const body = req.body === undefined
    ? ""
    : typeof req.body === "string"
    ? req.body.slice(0, 300)
    : `<${req.body.byteLength} bytes>`;
  return `${req.method} ${req.path.slice(0, 300)} ${JSON.stringify(req.headers).slice(0, 300)} ${body}`;
}

/** Sends one generated request and checks every invariant that holds for any request. */
async function exercise(req: FuzzRequest): Promise<void> {
  sent++;
  // A merge patch's result depends on the payload before it: read it first (reads write nothing).
  const before = isMergePatch(req) ? await payloadBefore(req) : undefined;
  store.take();
  const init: RequestInit = { method: req.method, headers: req.headers };
  if (req.body !== undefined) init.body = req.body;
  const response = await app.app.request(req.path, init);
  if (isMergePatch(req)) count("merge", response.status);
  if (req.path.startsWith("/v1/events?")) count("many", response.status);
  if (req.path.startsWith("/v1/webhooks")) count("webhooks", response.status);
  const what = describeRequest(req);
  const contentType = response.headers.get("content-type") ?? "";

  if (contentType.startsWith("text/event-stream")) {
    // A live stream: status and headers only.
    await response.body?.cancel();
    expect(response.status, what).toBe(200);
    expect(req.method, what).toBe("GET");
    expect(req.tenant, what).not.toBeNull();
    expect(store.take(), what).toEqual([]);
    return;
  }

  const text = await response.text();
  // Compaction runs after a write is answered: it belongs to that write.
  await app.service.idle();
  const written = store.take();
  const status = response.status;
  expect(status, what).toBeLessThan(500);
  const pathname = new URL(req.path, "http://localhost").pathname;

  if (status >= 200 && status < 300) {
    accepted++;
    if (req.tenant === null) {
      // Only the public routes answer without a valid token.
      expect(PUBLIC_PATHS.has(pathname), what).toBe(true);
      expect(written, what).toEqual([]);
      return;
    }
    const json = parseJson(text);
    if (pathname === "/v1/webhooks" || pathname.startsWith("/v1/webhooks/")) {
      exerciseWebhookAccepted(req, pathname, status, json, written, what);
      return;
    }
    if (req.method === "DELETE" && pathname.split("/").length === 4) {
      // A thread's delete: its tombstone and life marker written, its earlier objects removed, all its own.
      expect(json.deleted?.threadId, what).toBe(decodeURIComponent(pathname.split("/")[3] as string));
      expect(written.length, what).toBeGreaterThan(0);
      for (const entry of written) {
        const key = entry.startsWith("-") ? entry.slice(1) : entry;
        expect(key.startsWith(`tenants/${req.tenant}/threads/${json.deleted.threadId}/`), `${key} for ${what}`).toBe(
          true,
        );
        if (entry.startsWith("-")) acceptedKeys.delete(key);
        else acceptedKeys.add(key);
      }
      return;
    }
    if (req.method === "POST" && pathname.endsWith("/fork")) {
      // A fork writes its new thread, under the caller's tenant, and names its source.
      expect(status, what).toBe(201);
      expect(json.thread.forkedFrom?.threadId, what).toBe(decodeURIComponent(pathname.split("/")[3] as string));
      expect(written.length, what).toBeGreaterThan(0);
      for (const key of written) {
        expect(key.startsWith(`tenants/${req.tenant}/threads/${json.thread.id}/`), `${key} for ${what}`).toBe(true);
        acceptedKeys.add(key);
      }
      return;
    }
    if (req.method === "POST" || req.method === "PATCH" || req.method === "DELETE") {
      const threadId = json.thread.id as string;
      // An idempotent create (200) appends nothing; every other accepted write appends.
      if (req.method === "POST" && status === 200) expect(written, what).toEqual([]);
      else expect(written.length, what).toBeGreaterThan(0);
      for (const key of written) {
        expect(key.startsWith(`tenants/${req.tenant}/threads/${threadId}/`), `${key} for ${what}`).toBe(true);
        acceptedKeys.add(key);
      }
      if (req.method !== "DELETE") {
        // The payload comes back exactly as sent (a merge patch: merged into the one before,
        // by the RFC's own algorithm), `__proto__` keys as plain data.
        const patchValue = parseJson(bodyText(req.body) as string).payload;
        const sentValue = before === undefined ? patchValue : referenceMerge(before.value, patchValue);
        const sentPayload = JSON.stringify(sentValue);
        // A number JSON.parse could only read as ±Infinity would come back as null: refused instead.
        expect(hasNonFiniteNumber(sentValue), what).toBe(false);
        // An idempotent create answers the stored artifact: equal, keys perhaps in another order.
        if (req.method === "POST" && status === 200) {
          expect(canonical(json.artifact.payload), what).toBe(canonical(sentValue));
        } else expect(JSON.stringify(json.artifact.payload), what).toBe(sentPayload);
        if (status === 201) pool.push({ tenant: req.tenant, threadId, id: json.artifact.id });
        const read = await app.app.request(`/v1/threads/${threadId}/artifacts/${json.artifact.id}`, {
          headers: { authorization: `Bearer ${TOKENS[req.tenant]}` },
        });
        const stored = JSON.parse(await read.text());
        expect(read.status, what).toBe(200);
        if (req.method === "PATCH" || status === 201) {
          expect(JSON.stringify(stored.artifact.payload), what).toBe(sentPayload);
        }
        expect(store.take()).toEqual([]);
      }
    } else {
      expect(written, what).toEqual([]);
    }
    return;
  }

  // Nothing of a rejected request reaches the store.
  expect(written, what).toEqual([]);
  if (status === 304) {
    expect(req.method, what).toBe("GET");
    expect(Object.keys(req.headers).some((h) => h.toLowerCase() === "if-none-match"), what).toBe(true);
    expect(text, what).toBe("");
    return;
  }
  expect(status, what).toBeGreaterThanOrEqual(400);
  expect(contentType, what).toMatch(/^application\/problem\+json/);
  const problem = parseJson(text);
  expect(Object.keys(problem ?? {}).sort(), what).toEqual(["code", "detail", "requestId", "status", "title", "type"]);
  expect(problem.requestId, what).toBe(response.headers.get("x-request-id"));
  expect(PROBLEM_CODES, what).toContain(problem.code);
  expect(problem.status, what).toBe(status);
  if (req.tenant === null && !PUBLIC_PATHS.has(pathname)) {
    expect(status, what).toBe(401);
    expect(response.headers.get("www-authenticate"), what).toMatch(/^Bearer/);
  }
}

/**
 * An accepted webhook call: it wrote only the caller's registry keys (a subscription, its
 * cursors, its index entry), exactly what the route writes, and showed a secret only on
 * create and rotate.
 */
function exerciseWebhookAccepted(
  req: FuzzRequest,
  pathname: string,
  status: number,
  json: any,
  written: string[],
  what: string,
): void {
  const tenant = req.tenant as Tenant;
  const own = (key: string) => key.startsWith(`tenants/${tenant}/webhooks/`) || key.startsWith(`webhooks/${tenant}/`);
  for (const entry of written) {
    const key = entry.startsWith("-") ? entry.slice(1) : entry;
    expect(own(key), `${key} for ${what}`).toBe(true);
    expect(WEBHOOK_KEY.test(key), `${key} for ${what}`).toBe(true);
    if (entry.startsWith("-")) acceptedKeys.delete(key);
    else acceptedKeys.add(key);
  }
  const action = pathname.split("/")[4];
  const showsSecret = (req.method === "POST" && pathname === "/v1/webhooks") || action === "rotate-secret";
  if (json?.webhook) expect("secret" in json.webhook, what).toBe(showsSecret);
  if (req.method === "GET" || req.method === "HEAD") {
    expect(written, what).toEqual([]);
  } else if (pathname === "/v1/webhooks") {
    expect(status, what).toBe(201);
    expect(json.webhook.secret, what).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect(written.sort(), what).toEqual(
      [`tenants/${tenant}/webhooks/${json.webhook.id}.json`, `webhooks/${tenant}/${json.webhook.id}`].sort(),
    );
    webhookPool.push({ tenant, id: json.webhook.id });
  } else if (req.method === "DELETE") {
    expect(status, what).toBe(204);
    expect(written.every((entry) => entry.startsWith("-")), what).toBe(true);
  } else if (action === "replay") {
    expect(status, what).toBe(202);
    // The cursor moves back, or stays where it is (a replay never moves it forward): at most that key.
    const cursor = `tenants/${tenant}/webhooks/${pathname.split("/")[3]}/cursors/${json.replay.threadId}`;
    expect(written.filter((key) => key !== cursor), what).toEqual([]);
  } else {
    // PATCH and rotate-secret overwrite the subscription, nothing else.
    expect(written, what).toEqual([`tenants/${tenant}/webhooks/${pathname.split("/")[3]}.json`]);
  }
}

function isMergePatch(req: FuzzRequest): boolean {
  const type = Object.entries(req.headers).find(([name]) => name.toLowerCase() === "content-type")?.[1] ?? "";
  return req.method === "PATCH" && req.path.startsWith("/v1/threads/") &&
    type.split(";")[0]?.trim().toLowerCase() === "application/merge-patch+json";
}

/** The target artifact's payload as its tenant reads it, or undefined when there is none to read. */
async function payloadBefore(req: FuzzRequest): Promise<{ value: unknown } | undefined> {
  if (req.tenant === null) return undefined;
  const response = await app.app.request(new URL(req.path, "http://localhost").pathname, {
    headers: { authorization: `Bearer ${TOKENS[req.tenant]}` },
  });
  if (response.status !== 200) {
    await response.body?.cancel();
    return undefined;
  }
  return { value: (await response.json()).artifact.payload };
}

/** RFC 7396 section 2's MergePatch pseudocode, written out independently of src/model/merge-patch.ts. */
function referenceMerge(target: unknown, patch: unknown): unknown {
  const isObject = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === "object" && !Array.isArray(v);
  if (!isObject(patch)) return patch;
  const result: Record<string, unknown> = {};
  if (isObject(target)) {
    for (const key of Object.keys(target)) {
      Object.defineProperty(result, key, { value: target[key], enumerable: true, writable: true, configurable: true });
    }
  }
  for (const key of Object.keys(patch)) {
    if (patch[key] === null) delete result[key];
    else {
      const merged = referenceMerge(Object.hasOwn(result, key) ? result[key] : undefined, patch[key]);
      Object.defineProperty(result, key, { value: merged, enumerable: true, writable: true, configurable: true });
    }
  }
  return result;
}

// ---------- generators ----------

/** Characters a header value may carry (no NUL, CR or LF). */
const headerText = (maxLength = 60) =>
  fc
    .array(fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff }), fc.constant(0x09)), {
      maxLength,
    })
    .map((codes) => String.fromCharCode(...codes));

const validThreadId = fc.integer({ min: 0, max: 99 }).map((i) => `fuzz-${i}`);

const threadSegment = fc.oneof(
  { weight: 6, arbitrary: validThreadId.map(encodeURIComponent) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 40 }).map(encodeURIComponent) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 40 }).map(encodeURIComponent) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "..",
      ".",
      "%2e%2e",
      "%2E%2E%2F%2E%2E",
      "..%2F..%2Ftenants",
      ".hidden",
      "-dash",
      "a".repeat(128),
      "a".repeat(129),
      "%00",
      "%",
      "%zz",
      "%C0%AF",
      "%ED%A0%80",
      "a%2Fb",
      "a%5Cb",
      "a%20b",
      "tenants%2Ftenant-b",
      "fuzz-1%3A%3Ax",
      "%E2%80%AE",
      "",
    ),
  },
  { weight: 1, arbitrary: fc.string({ minLength: 129, maxLength: 2000 }).map(encodeURIComponent) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 20_000 }).map((n) => "x".repeat(n)) },
);

const artifactSegment = fc.oneof(
  { weight: 4, arbitrary: fc.nat().map((i) => ({ poolIndex: i })) },
  { weight: 2, arbitrary: fc.uuid().map((id) => ({ raw: id })) },
  { weight: 1, arbitrary: fc.uuid().map((id) => ({ raw: id.toUpperCase() })) },
  { weight: 2, arbitrary: fc.string({ maxLength: 50 }).map((s) => ({ raw: encodeURIComponent(s) })) },
  {
    weight: 1,
    arbitrary: fc.constantFrom("..", "%2e%2e", "00000000-0000-0000-0000-000000000000", "not-a-uuid", "%00").map((
      raw,
    ) => ({ raw })),
  },
);

type ArtifactRef = { poolIndex: number } | { raw: string };

/** Resolves an artifact reference: an existing artifact (its thread and tenant), or a raw id. */
function resolveArtifact(ref: ArtifactRef): { id: string; threadId?: string; tenant?: Tenant } {
  if ("raw" in ref) return { id: ref.raw };
  const entry = pool[ref.poolIndex % Math.max(pool.length, 1)];
  return entry ? { id: entry.id, threadId: entry.threadId, tenant: entry.tenant } : { id: crypto.randomUUID() };
}

/** Object keys that mean something to JavaScript objects. */
const trickyKey = fc.constantFrom(
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "__defineGetter__",
  "polluted",
);

/** JSON-able values whose objects may have tricky keys as own, plain properties. */
const trickyValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.jsonValue({ maxDepth: 2 }),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.array(fc.tuple(fc.oneof(trickyKey, fc.string({ maxLength: 8 })), tie("value")), { maxLength: 5 }).map((
      entries,
    ) => Object.fromEntries(entries)),
  ),
})).value;

/** Payload texts: arbitrary JSON, prototype keys, huge and odd numbers, deep nesting, garbage. */
const payloadText = fc.oneof(
  { weight: 5, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
  { weight: 4, arbitrary: trickyValue.map((v) => JSON.stringify(v)) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '{"__proto__":{"polluted":"yes"}}',
      '{"constructor":{"prototype":{"polluted":"yes"}}}',
      '{"a":{"__proto__":{"polluted":1},"b":[{"__proto__":null}]}}',
      '[{"__proto__":{"toString":"x"}},{"prototype":{"polluted":true}}]',
      '{"__proto__":[],"__proto__":{"polluted":"dup"}}',
    ),
  },
  {
    weight: 2,
    arbitrary: fc.oneof(
      fc.constantFrom(
        "1e400",
        "-1e400",
        "1E+999",
        "1e308",
        "-1e308",
        "123456789012345678901234567890",
        "-0",
        "0.1e-400",
        "4.9e-324",
        "9007199254740993",
        "[1e400]",
        '{"n":-1e999}',
        "1.7976931348623157e309",
      ),
      fc.bigInt().map(String),
      fc.tuple(fc.integer(), fc.integer({ min: -500, max: 500 })).map(([m, e]) => `${m}e${e}`),
      fc.double().map((d) => (Number.isFinite(d) ? String(d) : "0")),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.integer({ min: 1, max: 6000 }), fc.boolean()).map(([n, arrays]) =>
      arrays ? "[".repeat(n) + "]".repeat(n) : '{"a":'.repeat(n) + "1" + "}".repeat(n)
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 30 }) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: MAX_PAYLOAD_BYTES - 20, max: MAX_PAYLOAD_BYTES + 20 }).map((n) =>
      JSON.stringify("p".repeat(n))
    ),
  },
);

const artifactTypeText = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('"plan"', '"note"', '"preview"') },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 140 }).map((s) => JSON.stringify(s)) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }).map((v) => JSON.stringify(v)) },
);

const identityText = fc.oneof(
  { weight: 4, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.constantFrom('"main"', '"k1"', '"k2"') },
  { weight: 1, arbitrary: fc.string({ maxLength: 270 }).map((s) => JSON.stringify(s)) },
  { weight: 1, arbitrary: fc.constantFrom("null", "1", "[]", "{}") },
);

const extraFields = fc.array(
  fc.tuple(fc.oneof(trickyKey, fc.string({ maxLength: 6 })), fc.jsonValue({ maxDepth: 1 })),
  { maxLength: 2 },
);

function objectText(fields: Array<[string, string | undefined]>): string {
  return `{${
    fields
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${JSON.stringify(k)}:${v}`)
      .join(",")
  }}`;
}

const createBody = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .tuple(
        artifactTypeText,
        payloadText,
        identityText,
        fc.oneof({ weight: 4, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: extraFields }),
      )
      .map(([type, payload, identity, extras]) =>
        objectText([
          ["artifactType", type],
          ["payload", payload],
          ["identityKey", identity],
          ...extras.map(([k, v]) => [k, JSON.stringify(v)] as [string, string]),
        ])
      ),
  },
  { weight: 2, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "",
      " ",
      "\n",
      "null",
      "[]",
      "{}",
      '{"payload":1}',
      '{"artifactType":"x"}',
      "{",
      '{"artifactType":"x","payload":1}garbage',
    ),
  },
);

const updateBody = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .tuple(payloadText, fc.oneof({ weight: 4, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: extraFields }))
      .map(([payload, extras]) =>
        objectText([["payload", payload], ...extras.map(([k, v]) => [k, JSON.stringify(v)] as [string, string])])
      ),
  },
  { weight: 1, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.constantFrom("", "{}", '{"payload":1,"version":2}', '{"artifactType":"x","payload":1}') },
);

/** Invalid UTF-8 sequences (overlong, surrogate, truncated, stray continuation, out of range). */
/** Merge patch bodies: nested patches with nulls, tricky keys, sizes around the bound, and the refused shapes. */
const mergePatchValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
    { weight: 1, arbitrary: fc.constant(null) },
    {
      weight: 3,
      arbitrary: fc.array(fc.tuple(fc.oneof(trickyKey, fc.constantFrom("a", "b", "steps")), tie("value")), {
        maxLength: 4,
      }).map((entries) => {
        const object: Record<string, unknown> = {};
        for (const [key, value] of entries) {
          Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
        }
        return object;
      }),
    },
  ),
})).value;

const mergeBody = fc.oneof(
  { weight: 6, arbitrary: mergePatchValue.map((patch) => JSON.stringify({ payload: patch })) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: MAX_PAYLOAD_BYTES - 40, max: MAX_PAYLOAD_BYTES + 40 }).map((n) =>
      JSON.stringify({ payload: { big: "x".repeat(n) } })
    ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '{"payload":null}',
      "{}",
      "null",
      '"text"',
      "[]",
      '{"payload":{},"version":2}',
      '{"payload":{"a":1},"artifactType":"x"}',
      '{"__proto__":{"payload":1}}',
    ),
  },
);

const invalidUtf8 = fc.constantFrom(
  [0xff],
  [0xfe],
  [0xc0, 0x80],
  [0xc1, 0xbf],
  [0xed, 0xa0, 0x80],
  [0xe2, 0x82],
  [0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
);

/** A body text, sometimes as bytes with invalid UTF-8 spliced into a string, sometimes far over the bound. */
function withByteVariants(body: fc.Arbitrary<string>): fc.Arbitrary<string | Uint8Array<ArrayBuffer>> {
  return fc.oneof(
    { weight: 12, arbitrary: body },
    {
      weight: 2,
      arbitrary: fc.tuple(body, invalidUtf8, fc.nat()).map(([text, bad, at]) => {
        const bytes = new TextEncoder().encode(text);
        // Inside the first string literal if there is one, so the JSON would otherwise parse.
        const quote = text.indexOf('"');
        const cut = quote >= 0 ? Math.min(quote + 1, bytes.length) : at % (bytes.length + 1);
        return new Uint8Array([...bytes.slice(0, cut), ...bad, ...bytes.slice(cut)]);
      }),
    },
    {
      weight: 1,
      arbitrary: fc.integer({ min: BODY_BOUND - 64, max: BODY_BOUND * 3 }).map((n) =>
        `{"artifactType":"big","payload":"${"b".repeat(n)}"}`
      ),
    },
  );
}

const contentType = fc.oneof(
  { weight: 12, arbitrary: fc.constant("application/json") },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "application/json; charset=utf-8",
      "APPLICATION/JSON",
      "application/vnd.api+json",
      "application/merge-patch+json",
      "text/plain",
      "text/json",
      "",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/jsonx",
      "json",
      "application/json, text/plain",
      "application/octet-stream",
      undefined,
    ),
  },
  { weight: 1, arbitrary: headerText(30) },
);

const tenantArb = fc.constantFrom<Tenant>(...TENANTS);

/** Authorization: mostly a valid token, else nothing or garbage that can never be valid. */
const authorization: fc.Arbitrary<{ header?: string; tenant: Tenant | null }> = fc.oneof(
  { weight: 30, arbitrary: tenantArb.map((tenant) => ({ header: `Bearer ${TOKENS[tenant]}`, tenant })) },
  { weight: 1, arbitrary: tenantArb.map((tenant) => ({ header: `bearer   ${TOKENS[tenant]}`, tenant })) },
  { weight: 1, arbitrary: fc.constant({ tenant: null }) },
  { weight: 1, arbitrary: headerText(80).map((h) => ({ header: `x${h}`, tenant: null })) },
  { weight: 1, arbitrary: headerText(80).map((h) => ({ header: `Bearer z${h}`, tenant: null })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.base64String(), fc.base64String(), fc.base64String())
      .map(([a, b, c]) => ({ header: `Bearer e${a}.${b}.${c}`.replace(/[+/=]/g, "_"), tenant: null })),
  },
  {
    weight: 1,
    arbitrary: tenantArb.chain((tenant) =>
      fc.constantFrom(
        { header: `Bearer ${TOKENS[tenant]}x`, tenant: null },
        { header: `Bearer ${TOKENS[tenant].slice(1)}`, tenant: null },
        { header: `Basic ${btoa(`${TOKENS[tenant]}:`)}`, tenant: null },
        { header: `Bearer ${TOKENS[tenant]} extra`, tenant: null },
        { header: TOKENS[tenant], tenant: null },
        { header: `Token ${TOKENS[tenant]}`, tenant: null },
      )
    ),
  },
);

const preconditionValue = fc.oneof(
  fc.constantFrom(
    '"1"',
    '"2"',
    '"3"',
    "*",
    'W/"1"',
    '"1", "2"',
    '"0"',
    '""',
    '"-1"',
    '"1.0"',
    "1",
    '"99999999999999999999"',
    " * ",
    '"1",',
  ),
  headerText(40),
);

const lastEventId = fc.oneof(
  fc.nat({ max: 50 }).map(String),
  fc.constantFrom("-1", "1e3", " 5 ", "99999999999999999999", "0x10", "", "1.5", "\t3", "\u00b9", "\u00bd"),
  headerText(20),
);

const contentLengthLie = fc.oneof(
  { weight: 6, arbitrary: fc.constant(undefined) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "0",
      "1",
      "-1",
      "abc",
      "1e3",
      "99999999999999999999",
      "104857600",
      String(BODY_BOUND + 1),
      String(BODY_BOUND),
    ),
  },
  { weight: 1, arbitrary: fc.nat({ max: 200_000 }).map(String) },
);

const queryValue = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom("0", "1", "200", "201", "-1", "strong", "cache", "1e2", "", "%", "9999999999999999"),
);
const queryString = fc
  .array(
    fc.tuple(
      fc.oneof(
        fc.constantFrom(
          "consistency",
          "minSeq",
          "atSeq",
          "limit",
          "cursor",
          "since",
          "access_token",
          "__proto__",
          "constructor",
        ),
        fc.string({ maxLength: 6 }),
      ),
      queryValue,
    ),
    {
      maxLength: 3,
    },
  )
  .map((
    pairs,
  ) => (pairs.length === 0
    ? ""
    : `?${pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&")}`)
  );

function headersOf(entries: Record<string, string | undefined>): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(entries)) if (value !== undefined) headers[name] = value;
  return headers;
}

/** `threads=` lists: valid and invalid ids, `:seq` suffixes, repeats, empty entries, up to past the bound. */
const threadListEntry = fc.oneof(
  { weight: 6, arbitrary: validThreadId },
  {
    weight: 2,
    arbitrary: fc.tuple(validThreadId, fc.oneof(fc.nat({ max: 50 }).map(String), queryValue)).map(([t, q]) =>
      `${t}:${q}`
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: fc.constantFrom("", ":", ":5", "a::", "-x", "x:-1", "x:01", "x:1e3", "%00") },
);
const threadList = fc.oneof(
  { weight: 4, arbitrary: fc.array(threadListEntry, { maxLength: 8 }).map((e) => e.join(",")) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 98, max: 102 }).map((n) => Array.from({ length: n }, (_, i) => `fuzz-${i}`).join(",")),
  },
);

/** Last-Event-ID values for the multi-thread stream: never a valid token, in many shapes. */
const resumeTokenLike = fc.oneof(
  fc.tuple(fc.base64String({ maxLength: 40 }), fc.base64String({ maxLength: 30 })).map(([a, b]) =>
    `${a.replace(/=/g, "")}.${b.replace(/=/g, "")}`
  ),
  fc.constantFrom("", "5", "AQ.", ".AQ", "AQ.AQ.AQ", "%%", "AYzs.LdjqnF9UBt9f-yHEIEhiUQ"),
  lastEventId,
);

/**
 * The artifact a request aims at, in its own thread; with a valid token, the owner's or
 * (`sameTenant` false) the other tenant's.
 */
function aimAt(ref: ArtifactRef, sameTenant: boolean, auth: { header?: string; tenant: Tenant | null }) {
  const target = resolveArtifact(ref);
  let tenantAuth = auth;
  if (target.tenant && auth.tenant !== null) {
    const tenant = sameTenant ? target.tenant : (TENANTS.find((t) => t !== target.tenant) as Tenant);
    tenantAuth = { header: `Bearer ${TOKENS[tenant]}`, tenant };
  }
  return { target, tenantAuth };
}

/** Webhook URLs: accepted ones, and each way one is refused (scheme, credentials, private hosts, size, garbage). */
const webhookUrlText = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.string({ maxLength: 30 }).map((path) =>
      JSON.stringify(`https://hooks.example.com/${encodeURIComponent(path)}`)
    ),
  },
  { weight: 1, arbitrary: fc.constant('"https://93.184.215.14/in"') },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '"https://10.0.0.1/"',
      '"https://169.254.169.254/latest/meta-data/"',
      '"https://[fd00::1]/"',
      '"https://[::ffff:127.0.0.1]/"',
      '"https://127.0.0.1/"',
      '"https://0x7f.1/"',
      '"https://internal.example.com/"',
      '"https://nowhere.example.org/"',
      '"https://metadata.google.internal/"',
      '"https://localhost/"',
      '"http://hooks.example.com/"',
      '"http://127.0.0.1:9/"',
      '"ftp://hooks.example.com/"',
      '"javascript:alert(1)"',
      '"https://user:pw@hooks.example.com/"',
      '"//hooks.example.com/"',
      '"https://"',
      '""',
      "null",
      "7",
      '["https://hooks.example.com/"]',
    ),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 2030, max: 2060 }).map((n) =>
      JSON.stringify(`https://hooks.example.com/${"a".repeat(n - "https://hooks.example.com/".length)}`)
    ),
  },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 40 }).map((s) => JSON.stringify(s)) },
);

const webhookThreadsText = fc.oneof(
  { weight: 4, arbitrary: fc.constant(undefined) },
  { weight: 3, arbitrary: fc.uniqueArray(validThreadId, { minLength: 1, maxLength: 4 }).map((a) => JSON.stringify(a)) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "[]",
      "null",
      '"fuzz-1"',
      '["fuzz-1","fuzz-1"]',
      '["-bad"]',
      '["a/b"]',
      "[1]",
      JSON.stringify(Array.from({ length: 100 }, (_, i) => `t-${i}`)),
      JSON.stringify(Array.from({ length: 101 }, (_, i) => `t-${i}`)),
    ),
  },
);

const webhookEventsText = fc.oneof(
  { weight: 4, arbitrary: fc.constant(undefined) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '["artifact-updated"]',
      '["thread-deleted"]',
      '["thread-deleted","artifact-updated"]',
    ),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "[]",
      "null",
      '"artifact-updated"',
      '["artifact.updated"]',
      '["artifact-updated","artifact-updated"]',
      '["nope"]',
      "[0]",
    ),
  },
);

const webhookDescriptionText = fc.oneof(
  { weight: 4, arbitrary: fc.constant(undefined) },
  { weight: 3, arbitrary: fc.string({ unit: "grapheme", maxLength: 200 }).map((s) => JSON.stringify(s)) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 500, max: 520 }).map((n) => JSON.stringify("d".repeat(n))),
  },
  { weight: 1, arbitrary: fc.constantFrom("null", "5", "[]", '"é"') },
);

const webhookStatusText = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.constantFrom('"active"', '"paused"') },
  { weight: 1, arbitrary: fc.constantFrom('"failing"', '"ACTIVE"', "null", "true") },
);

const webhookExtras = fc.oneof(
  { weight: 5, arbitrary: fc.constant([] as Array<[string, unknown]>) },
  { weight: 1, arbitrary: extraFields },
  {
    weight: 1,
    arbitrary: fc.constantFrom<Array<[string, unknown]>>(
      [["secret", "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]],
      [["id", "wh_00000000000000000000000000000000"]],
      [["tenant", "tenant-b"]],
      [["status", "active"]],
    ),
  },
);

const createWebhookBody = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.tuple(webhookUrlText, webhookThreadsText, webhookEventsText, webhookDescriptionText, webhookExtras)
      .map(([url, threads, events, description, extras]) =>
        objectText([
          ["url", url],
          ["threads", threads],
          ["events", events],
          ["description", description],
          ...extras.map(([k, v]) => [k, JSON.stringify(v)] as [string, string]),
        ])
      ),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.constantFrom("", "{", "null", "[]", "{}", '{"url":"https://hooks.example.com/"}x') },
);

const updateWebhookBody = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.tuple(
      fc.option(webhookUrlText, { nil: undefined, freq: 3 }),
      webhookThreadsText,
      webhookEventsText,
      webhookDescriptionText,
      webhookStatusText,
      webhookExtras,
    ).map(([url, threads, events, description, status, extras]) =>
      objectText([
        ["url", url],
        ["threads", threads],
        ["events", events],
        ["description", description],
        ["status", status],
        ...extras.map(([k, v]) => [k, JSON.stringify(v)] as [string, string]),
      ])
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom("", "{}", "null", '{"threads":null}', "[]") },
);

const replayBody = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.tuple(
      fc.oneof(
        { weight: 6, arbitrary: validThreadId.map((t) => JSON.stringify(t)) },
        { weight: 1, arbitrary: fc.constantFrom('"-x"', "null", "1", undefined) },
      ),
      fc.oneof(
        { weight: 6, arbitrary: fc.nat({ max: 100 }).map(String) },
        { weight: 1, arbitrary: fc.constantFrom("-1", "1.5", '"3"', "null", "1e300", "9007199254740992", undefined) },
      ),
      fc.oneof({ weight: 6, arbitrary: fc.constant([] as Array<[string, unknown]>) }, {
        weight: 1,
        arbitrary: webhookExtras,
      }),
    ).map(([threadId, since, extras]) =>
      objectText([
        ["threadId", threadId],
        ["since", since],
        ...extras.map(([k, v]) => [k, JSON.stringify(v)] as [string, string]),
      ])
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom("", "{}", "null", "[]") },
);

/** A webhook id: one created (the caller's or the other tenant's), a random one, or no id at all. */
const webhookSegment = fc.oneof(
  { weight: 6, arbitrary: fc.nat().map((i) => ({ poolIndex: i })) },
  { weight: 1, arbitrary: fc.uuid().map((u) => ({ raw: `wh_${u.replaceAll("-", "")}` })) },
  {
    weight: 2,
    arbitrary: fc.oneof(
      fc.string({ maxLength: 40 }).map(encodeURIComponent),
      fc.constantFrom(
        "..",
        "%2e%2e",
        "wh_",
        "WH_00000000000000000000000000000000",
        "wh_0000000000000000000000000000000g",
        "wh_000000000000000000000000000000000",
        "wh_..%2F..%2Ftenants",
        "%00",
        "",
      ),
    ).map((raw) => ({ raw })),
  },
);

// ---------- properties ----------

const RUNS = { create: 3000, update: 2000, merge: 1000, many: 800, paths: 2500, headers: 2500, webhooks: 2000 };

describe("fuzz: generated requests against the app", () => {
  it(`create-artifact with arbitrary bodies, content types and tokens (${RUNS.create} requests)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        validThreadId,
        withByteVariants(createBody),
        contentType,
        authorization,
        async (threadId, body, type, auth) => {
          await exercise({
            method: "POST",
            path: `/v1/threads/${threadId}/artifacts`,
            headers: headersOf({ "content-type": type, authorization: auth.header }),
            body,
            tenant: auth.tenant,
          });
        },
      ),
      { numRuns: RUNS.create },
    );
    expect(pool.length).toBeGreaterThan(100);
  });

  it(`update and remove with arbitrary bodies and If-Match, across tenants (${RUNS.update} requests)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        artifactSegment,
        fc.boolean(),
        fc.constantFrom("PATCH", "PATCH", "DELETE"),
        withByteVariants(updateBody),
        contentType,
        fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 2, arbitrary: preconditionValue }),
        authorization,
        async (ref, sameTenant, method, body, type, ifMatch, auth) => {
          const { target, tenantAuth } = aimAt(ref, sameTenant, auth);
          await exercise({
            method,
            path: `/v1/threads/${target.threadId ?? "fuzz-1"}/artifacts/${target.id}`,
            headers: headersOf({ "content-type": type, authorization: tenantAuth.header, "if-match": ifMatch }),
            ...(method === "PATCH" ? { body } : {}),
            tenant: tenantAuth.tenant,
          });
        },
      ),
      { numRuns: RUNS.update },
    );
  });

  it(`merge patches with arbitrary patches, sizes and If-Match, across tenants (${RUNS.merge} requests)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        artifactSegment,
        fc.boolean(),
        withByteVariants(mergeBody),
        fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: preconditionValue }),
        authorization,
        async (ref, sameTenant, body, ifMatch, auth) => {
          const { target, tenantAuth } = aimAt(ref, sameTenant, auth);
          await exercise({
            method: "PATCH",
            path: `/v1/threads/${target.threadId ?? "fuzz-1"}/artifacts/${target.id}`,
            headers: headersOf({
              "content-type": "application/merge-patch+json",
              authorization: tenantAuth.header,
              "if-match": ifMatch,
            }),
            body,
            tenant: tenantAuth.tenant,
          });
        },
      ),
      { numRuns: RUNS.merge },
    );
    expect(outcomes.merge.get(200) ?? 0).toBeGreaterThan(20);
    // 412 and 413 come up in most runs; their edges are pinned in test/http/limits.test.ts and the contract.
    for (const status of [400, 404]) expect(outcomes.merge.get(status) ?? 0, `${status}`).toBeGreaterThan(0);
  });

  it(`the many-threads stream with arbitrary thread lists, resume tokens and query tokens (${RUNS.many} requests)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        threadList,
        fc.option(resumeTokenLike, { nil: undefined }),
        fc.boolean(),
        authorization,
        async (list, token, inQuery, auth) => {
          const bearer = auth.header?.startsWith("Bearer ") ? auth.header.slice("Bearer ".length) : undefined;
          const query = `threads=${encodeURIComponent(list)}${
            inQuery && bearer ? `&access_token=${encodeURIComponent(bearer)}` : ""
          }`;
          await exercise({
            method: "GET",
            path: `/v1/events?${query}`,
            headers: headersOf({ authorization: inQuery ? undefined : auth.header, "last-event-id": token }),
            tenant: auth.tenant,
          });
        },
      ),
      { numRuns: RUNS.many },
    );
    for (const status of [200, 400, 401]) expect(outcomes.many.get(status) ?? 0, `${status}`).toBeGreaterThan(0);
  });

  it(`every route with arbitrary path parameters (${RUNS.paths} requests)`, async () => {
    const route = fc.constantFrom(
      "create",
      "read-thread",
      "get-artifact",
      "update",
      "remove",
      "events",
      "list-threads",
      "versions",
      "fork",
      "delete-thread",
      "raw",
    );
    await fc.assert(
      fc.asyncProperty(
        route,
        threadSegment,
        artifactSegment,
        fc.string({ unit: "grapheme", maxLength: 60 }),
        authorization,
        async (name, thread, ref, raw, auth) => {
          const artifact = resolveArtifact(ref).id;
          const headers = headersOf({ authorization: auth.header, "content-type": "application/json" });
          const payload = JSON.stringify({ artifactType: "path", payload: { thread } });
          const requests: Record<string, Omit<FuzzRequest, "tenant" | "headers">> = {
            create: { method: "POST", path: `/v1/threads/${thread}/artifacts`, body: payload },
            "read-thread": { method: "GET", path: `/v1/threads/${thread}` },
            "get-artifact": { method: "GET", path: `/v1/threads/${thread}/artifacts/${artifact}` },
            update: {
              method: "PATCH",
              path: `/v1/threads/${thread}/artifacts/${artifact}`,
              body: JSON.stringify({ payload: { thread } }),
            },
            remove: { method: "DELETE", path: `/v1/threads/${thread}/artifacts/${artifact}` },
            events: { method: "GET", path: `/v1/threads/${thread}/events` },
            versions: { method: "GET", path: `/v1/threads/${thread}/artifacts/${artifact}/versions` },
            "delete-thread": { method: "DELETE", path: `/v1/threads/${thread}` },
            fork: {
              method: "POST",
              path: `/v1/threads/${thread}/fork`,
              body: JSON.stringify({
                threadId: `fork-${raw.length}`,
                ...(raw.length % 2 ? { atSeq: raw.length } : {}),
              }),
            },
            "list-threads": { method: "GET", path: `/v1/threads/${thread}/../../threads` },
            raw: { method: "GET", path: `/v1/threads/${thread}/${raw}` },
          };
          await exercise({
            ...(requests[name] as Omit<FuzzRequest, "tenant" | "headers">),
            headers,
            tenant: auth.tenant,
          });
        },
      ),
      { numRuns: RUNS.paths },
    );
  });

  it(`headers and queries: If-None-Match, Last-Event-ID, garbage Authorization, Content-Length lies (${RUNS.headers} requests)`, async () => {
    const route = fc.constantFrom(
      "read-thread",
      "events",
      "list-threads",
      "versions",
      "create",
      "update",
      "get-artifact",
      "remove",
    );
    await fc.assert(
      fc.asyncProperty(
        route,
        validThreadId,
        artifactSegment,
        authorization,
        fc.record(
          {
            ifNoneMatch: preconditionValue,
            ifMatch: preconditionValue,
            lastEventId,
            contentLength: contentLengthLie,
            query: queryString,
          },
          { requiredKeys: ["query", "contentLength"] },
        ),
        withByteVariants(createBody),
        async (name, threadId, ref, auth, h, body) => {
          const target = resolveArtifact(ref);
          const thread = target.threadId ?? threadId;
          const headers = headersOf({
            authorization: auth.header,
            "if-none-match": h.ifNoneMatch,
            "if-match": h.ifMatch,
            "last-event-id": h.lastEventId,
          });
          const withBody = (b: string | Uint8Array<ArrayBuffer>) => {
            headers["content-type"] = "application/json";
            if (h.contentLength !== undefined) headers["content-length"] = h.contentLength;
            return b;
          };
          let req: Omit<FuzzRequest, "tenant" | "headers">;
          switch (name) {
            case "read-thread":
              req = { method: "GET", path: `/v1/threads/${thread}${h.query}` };
              break;
            case "events":
              req = { method: "GET", path: `/v1/threads/${thread}/events${h.query}` };
              break;
            case "list-threads":
              req = { method: "GET", path: `/v1/threads${h.query}` };
              break;
            case "versions":
              req = { method: "GET", path: `/v1/threads/${thread}/artifacts/${target.id}/versions${h.query}` };
              break;
            case "create":
              req = { method: "POST", path: `/v1/threads/${thread}/artifacts${h.query}`, body: withBody(body) };
              break;
            case "update":
              req = {
                method: "PATCH",
                path: `/v1/threads/${thread}/artifacts/${target.id}${h.query}`,
                body: withBody(JSON.stringify({ payload: { h: h.query } })),
              };
              break;
            case "remove":
              req = { method: "DELETE", path: `/v1/threads/${thread}/artifacts/${target.id}${h.query}` };
              break;
            default:
              req = { method: "GET", path: `/v1/threads/${thread}/artifacts/${target.id}${h.query}` };
          }
          await exercise({ ...req, headers, tenant: auth.tenant });
        },
      ),
      { numRuns: RUNS.headers },
    );
  });

  it(`webhook routes with arbitrary bodies, ids, queries and tokens, across tenants (${RUNS.webhooks} requests)`, async () => {
    const route = fc.constantFrom(
      "create",
      "create",
      "create",
      "list",
      "get",
      "update",
      "update",
      "delete",
      "rotate",
      "deliveries",
      "replay",
      "replay",
    );
    await fc.assert(
      fc.asyncProperty(
        route,
        webhookSegment,
        // Mostly the caller's own webhook (so updates, rotations and replays land), else the other tenant's.
        fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
        fc.tuple(withByteVariants(createWebhookBody), withByteVariants(updateWebhookBody), replayBody),
        fc.oneof({ weight: 8, arbitrary: fc.constant("application/json") }, { weight: 1, arbitrary: contentType }),
        queryString,
        authorization,
        async (name, segment, sameTenant, [createBody, updateBody, replay], type, query, auth) => {
          let id: string;
          let tenantAuth = auth;
          if ("raw" in segment) id = segment.raw;
          else {
            const target = webhookPool[segment.poolIndex % Math.max(webhookPool.length, 1)];
            id = target?.id ?? `wh_${"0".repeat(32)}`;
            if (target && auth.tenant !== null) {
              const tenant = sameTenant ? target.tenant : (TENANTS.find((t) => t !== target.tenant) as Tenant);
              tenantAuth = { header: `Bearer ${TOKENS[tenant]}`, tenant };
            }
          }
          const path = `/v1/webhooks/${id}`;
          const requests: Record<string, Omit<FuzzRequest, "tenant" | "headers">> = {
            create: { method: "POST", path: "/v1/webhooks", body: createBody },
            list: { method: "GET", path: `/v1/webhooks${query}` },
            get: { method: "GET", path },
            update: { method: "PATCH", path, body: updateBody },
            delete: { method: "DELETE", path },
            rotate: { method: "POST", path: `${path}/rotate-secret` },
            deliveries: { method: "GET", path: `${path}/deliveries${query}` },
            replay: { method: "POST", path: `${path}/replay`, body: replay },
          };
          const request = requests[name] as Omit<FuzzRequest, "tenant" | "headers">;
          await exercise({
            ...request,
            headers: headersOf({
              authorization: tenantAuth.header,
              ...(request.body === undefined ? {} : { "content-type": type }),
            }),
            tenant: tenantAuth.tenant,
          });
        },
      ),
      { numRuns: RUNS.webhooks },
    );
    expect(webhookPool.length).toBeGreaterThan(20);
    // Each kind of answer came up: accepted (every route), refused, the limit, another tenant's id.
    for (const status of [200, 201, 202, 204, 400, 401, 404, 422]) {
      expect(outcomes.webhooks.get(status) ?? 0, `${status}`).toBeGreaterThan(0);
    }
  });

  it("sent at least 10,000 requests, stored only what accepted writes stored, and touched no prototype", async () => {
    expect(sent).toBeGreaterThanOrEqual(10_000);
    expect(accepted).toBeGreaterThan(1000);
    // The store holds exactly the keys accepted writes created, each under its tenant.
    const keys: string[] = [];
    for (let page = 0; page < 1000; page++) {
      const batch = await store.inner.list("", {
        limit: 1000,
        ...(keys.length ? { startAfter: keys[keys.length - 1] as string } : {}),
      });
      keys.push(...batch);
      if (batch.length < 1000) break;
    }
    expect(keys.sort()).toEqual([...acceptedKeys].sort());
    expect([...store.everyKey].sort()).toEqual([...acceptedKeys].sort());
    for (const key of keys) {
      const match = ROLLOUT_KEY.exec(key) ?? WEBHOOK_KEY.exec(key);
      expect(match, key).not.toBeNull();
      expect(TENANTS).toContain((match as RegExpExecArray)[1] ?? (match as RegExpExecArray)[2]);
    }
    expect(keys.some((k) => k.startsWith("webhooks/"))).toBe(true);
    expect(keys.some((k) => k.includes("/deltas/"))).toBe(true);

    // Every stream the fuzz opened and cancelled has been released.
    for (let i = 0; i < 1000 && app.feeds.size > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(app.feeds.size).toBe(0);

    expect(({} as any).polluted).toBeUndefined();
    expect(Object.hasOwn(Object.prototype, "polluted")).toBe(false);
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(protoBefore.object);
    expect(Object.getOwnPropertyNames(Array.prototype).sort()).toEqual(protoBefore.array);
    expect(
      Object.getOwnPropertyNames(Object.prototype).map((name) =>
        Object.getOwnPropertyDescriptor(Object.prototype, name)?.value
      ),
    ).toEqual(
      protoBefore.objectValues,
    );
  });

  it("keeps __proto__, constructor and prototype payload keys as plain data through create, read, list and events", async () => {
    const text =
      '{"artifactType":"proto","payload":{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},"prototype":1,"nested":[{"__proto__":{"isAdmin":true}}]}}';
    const auth = { authorization: `Bearer ${TOKENS["tenant-a"]}` };
    const created = await app.app.request("/v1/threads/proto-keys/artifacts", {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: text,
    });
    expect(created.status).toBe(201);
    const id = (await created.json()).artifact.id as string;
    const expectedPayload = JSON.stringify(JSON.parse(text).payload);

    const readTexts = [
      await (await app.app.request(`/v1/threads/proto-keys/artifacts/${id}`, { headers: auth })).text(),
      await (await app.app.request("/v1/threads/proto-keys", { headers: auth })).text(),
      await (await app.app.request("/v1/threads/proto-keys?consistency=cache", { headers: auth })).text(),
      await (await app.app.request("/v1/threads?limit=200", { headers: auth })).text(),
    ];
    for (const body of readTexts) expect(body).toContain(`"payload":${expectedPayload}`);

    const one = JSON.parse(readTexts[0] as string).artifact.payload;
    expect(Object.hasOwn(one, "__proto__")).toBe(true);
    expect(Object.getPrototypeOf(one)).toBe(Object.prototype);
    expect(one.polluted).toBeUndefined();
    expect(one.nested[0].isAdmin).toBeUndefined();

    const events = await app.app.request("/v1/threads/proto-keys/events", { headers: auth });
    const reader = (events.body as ReadableStream<Uint8Array>).getReader();
    let streamed = "";
    const hasEvent = () => streamed.includes("data:") && streamed.indexOf("\n\n", streamed.indexOf("data:")) >= 0;
    for (let i = 0; i < 100 && !hasEvent(); i++) {
      const { value, done } = await reader.read();
      if (done) break;
      streamed += new TextDecoder().decode(value);
    }
    await reader.cancel();
    expect(streamed).toContain(`"payload":${expectedPayload}`);

    // The rollout commit holds it as data too.
    const patch = await store.inner.get("tenants/tenant-a/threads/proto-keys/commits/000000000001.json");
    expect(patch).toContain(`"payload":${expectedPayload}`);
    expect(({} as any).polluted).toBeUndefined();
    expect(({} as any).isAdmin).toBeUndefined();
  });
});
