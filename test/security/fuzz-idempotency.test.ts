import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import type { PutIfAbsentResult } from "../../src/blob/port.ts";
import { createTestApp } from "../support/in-process.ts";

/**
 * A fuzz of `Idempotency-Key`s (fast-check) against the app in process, checked against a
 * model of API.md's rules: keys drawn from a small pool (so they repeat, on the same and
 * on other requests), malformed ones, the length edge, two tenants. A repeat of the same
 * request answers byte-for-byte what the first answer said and writes nothing; the key on
 * another request is 422 `idempotency_key_reused` and writes nothing; a malformed key is a
 * 400 that writes nothing; a refused write does not take its key; a thread's delete ends
 * the keys of its life.
 */

const TOKENS = { a: "idem-fuzz-token-a-51c0", b: "idem-fuzz-token-b-0a77" } as const;
type Tenant = keyof typeof TOKENS;

class CountingStore extends MemoryBlobStore {
  writes = 0;
  override async putIfAbsent(key: string, body: string): Promise<PutIfAbsentResult> {
    const result = await super.putIfAbsent(key, body);
    if (result === "created") this.writes++;
    return result;
  }
  override async put(key: string, body: string): Promise<void> {
    this.writes++;
    await super.put(key, body);
  }
  override async delete(key: string): Promise<void> {
    this.writes++;
    await super.delete(key);
  }
}

let app: ReturnType<typeof createTestApp>;
const store = new CountingStore();
beforeAll(() => {
  app = createTestApp({
    blobStore: store,
    env: {
      AUTH_TOKENS: `${TOKENS.a}:a,${TOKENS.b}:b`,
      MAX_PAYLOAD_BYTES: "2048",
      COMPACT_EVERY: "5",
      // As fast as it goes: the fuzz is about keys, not rates.
      RATE_LIMIT_WRITES: "0",
      RATE_LIMIT_READS: "0",
    },
  });
});
afterAll(async () => {
  await app?.close();
});

interface Sent {
  tenant: Tenant;
  method: string;
  path: string;
  threadId: string;
  ifMatch: string | undefined;
  contentType: string | undefined;
  body: string | undefined;
}

/** What the model remembers of a key's first answer. */
interface Remembered {
  request: string;
  threadId: string;
  status: number;
  text: string;
}

const VALID_KEY = /^[\x20-\x7e]{1,255}$/;
const THREADS = ["t0", "t1", "t2"];
const model = new Map<string, Remembered>();
/** Artifacts the server made, per tenant and thread, for updates and removes to aim at. */
const artifacts = new Map<string, string[]>();
const stats = { replays: 0, reused: 0, malformed: 0, fresh: 0 };
/** The request before, for a retry to send again. */
let previous: { sent: Sent; key: string } | undefined;

const keyArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 299 }).map((i) => `pool-${i}`) },
  // What a header value may carry (no NUL, CR or LF): printable ASCII, tab, Latin-1.
  {
    weight: 2,
    arbitrary: fc
      .array(fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff }), fc.constant(0x09)), {
        maxLength: 20,
      })
      .map((codes) => String.fromCharCode(...codes)),
  },
  { weight: 1, arbitrary: fc.constantFrom("k".repeat(255), "k".repeat(256), "", " ", "caf\u00e9", "tab\there") },
);

const requestArb = fc.record({
  tenant: fc.constantFrom<Tenant>("a", "a", "b"),
  key: keyArb,
  thread: fc.constantFrom(...THREADS),
  route: fc.constantFrom("create", "create", "create", "update", "merge", "remove", "delete"),
  payload: fc.oneof(fc.constant({ n: 1 }), fc.constant({ n: 2 }), fc.jsonValue({ maxDepth: 2 })),
  artifactIndex: fc.nat(),
  ifMatch: fc.option(fc.constantFrom('"1"', '"2"', "*"), { nil: undefined }),
});

type Generated = typeof requestArb extends fc.Arbitrary<infer T> ? T : never;

function requestOf(r: Generated): Sent {
  const list = artifacts.get(`${r.tenant}/${r.thread}`) ?? [];
  const id = list.length > 0 ? list[r.artifactIndex % list.length] : "00000000-0000-7000-8000-000000000000";
  const base = `/v1/threads/${r.thread}`;
  switch (r.route) {
    case "create":
      return {
        tenant: r.tenant,
        method: "POST",
        path: `${base}/artifacts`,
        threadId: r.thread,
        ifMatch: undefined,
        contentType: "application/json",
        body: JSON.stringify({ artifactType: "note", payload: r.payload }),
      };
    case "update":
    case "merge":
      return {
        tenant: r.tenant,
        method: "PATCH",
        path: `${base}/artifacts/${id}`,
        threadId: r.thread,
        ifMatch: r.ifMatch,
        contentType: r.route === "merge" ? "application/merge-patch+json" : "application/json",
        body: JSON.stringify({ payload: r.payload }),
      };
    case "remove":
      return {
        tenant: r.tenant,
        method: "DELETE",
        path: `${base}/artifacts/${id}`,
        threadId: r.thread,
        ifMatch: r.ifMatch,
        contentType: undefined,
        body: undefined,
      };
    default:
      return {
        tenant: r.tenant,
        method: "DELETE",
        path: base,
        threadId: r.thread,
        ifMatch: r.ifMatch,
        contentType: undefined,
        body: undefined,
      };
  }
}

async function send(sent: Sent, key: string): Promise<{ status: number; text: string; wrote: number }> {
  const headers: Record<string, string> = { authorization: `Bearer ${TOKENS[sent.tenant]}`, "idempotency-key": key };
  if (sent.ifMatch !== undefined) headers["if-match"] = sent.ifMatch;
  if (sent.contentType !== undefined) headers["content-type"] = sent.contentType;
  const before = store.writes;
  const response = await app.app.request(sent.path, {
    method: sent.method,
    headers,
    ...(sent.body === undefined ? {} : { body: sent.body }),
  });
  const text = await response.text();
  // Compaction after an answer belongs to that write.
  await app.service.idle();
  return { status: response.status, text, wrote: store.writes - before };
}

const RUNS = Number(process.env.PROPERTY_RUNS ?? 1500);

describe("fuzz: Idempotency-Key", () => {
  it("follows the model: repeats answered and unwritten, reuse 422, malformed 400 (1,500 requests)", async () => {
    await fc.assert(
      fc.asyncProperty(requestArb, fc.integer({ min: 0, max: 3 }), async (generated, retry) => {
        // One in four is a retry: the previous request again, with its key.
        const { sent, key: sentKey } = retry === 0 && previous
          ? previous
          : { sent: requestOf(generated), key: generated.key };
        previous = { sent, key: sentKey };
        const r = { tenant: sent.tenant, key: sentKey };
        const requestText = JSON.stringify([sent.method, sent.path, sent.ifMatch, sent.contentType, sent.body]);
        const what = `${requestText} key=${JSON.stringify(r.key)} tenant=${r.tenant}`;
        const answer = await send(sent, r.key);
        expect(answer.status, what).toBeLessThan(500);
        // Headers drop a value's leading and trailing spaces and tabs: the server sees the rest.
        const key = r.key.replace(/^[ \t]+|[ \t]+$/g, "");
        if (!VALID_KEY.test(key)) {
          stats.malformed++;
          expect({ status: answer.status, wrote: answer.wrote }, what).toEqual({ status: 400, wrote: 0 });
          expect(JSON.parse(answer.text).code, what).toBe("invalid_request");
          return;
        }
        const modelKey = `${r.tenant}\u0000${key}`;
        const remembered = model.get(modelKey);
        if (remembered && remembered.request === requestText) {
          stats.replays++;
          expect({ status: answer.status, text: answer.text, wrote: answer.wrote }, what).toEqual({
            status: remembered.status,
            text: remembered.text,
            wrote: 0,
          });
          return;
        }
        if (remembered) {
          // Another request with the key: 422, unless the request is invalid on its own
          // (a body its route refuses is a 400 before any key is looked up).
          const code = JSON.parse(answer.text).code;
          if (code === "invalid_request") {
            expect({ status: answer.status, wrote: answer.wrote }, what).toEqual({ status: 400, wrote: 0 });
            return;
          }
          stats.reused++;
          expect({ status: answer.status, code, wrote: answer.wrote }, what).toEqual({
            status: 422,
            code: "idempotency_key_reused",
            wrote: 0,
          });
          return;
        }
        stats.fresh++;
        if (answer.status >= 300) {
          // Refused: nothing written, the key not taken.
          expect(answer.wrote, what).toBe(0);
          return;
        }
        const json = JSON.parse(answer.text);
        if (sent.method === "DELETE" && sent.path === `/v1/threads/${sent.threadId}`) {
          // The life's keys end with it; its own delete keeps its key.
          for (const [k, v] of model) {
            if (k.startsWith(`${r.tenant}\u0000`) && v.threadId === sent.threadId) model.delete(k);
          }
          artifacts.delete(`${r.tenant}/${sent.threadId}`);
        }
        if (answer.status === 201) {
          const list = artifacts.get(`${r.tenant}/${sent.threadId}`) ?? [];
          list.push(json.artifact.id);
          artifacts.set(`${r.tenant}/${sent.threadId}`, list);
        }
        expect(answer.wrote, what).toBeGreaterThan(0);
        model.set(modelKey, {
          request: requestText,
          threadId: sent.threadId,
          status: answer.status,
          text: answer.text,
        });
      }),
      // PROPERTY_SEED / PROPERTY_RUNS: a longer run with a chosen seed.
      { numRuns: RUNS, ...(process.env.PROPERTY_SEED ? { seed: Number(process.env.PROPERTY_SEED) } : {}) },
    );
    // The run exercised every branch of the model (in proportion to its length: 50, 50 and
    // 20 in the default 1,500 requests).
    expect(stats.replays).toBeGreaterThan(RUNS / 30);
    expect(stats.reused).toBeGreaterThan(RUNS / 30);
    expect(stats.malformed).toBeGreaterThan(RUNS / 75);
  });
});
