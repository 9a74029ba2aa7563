import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import type { BlobStore, ListOptions, PutIfAbsentResult } from "../../src/blob/port.ts";
import { createTestApp } from "../support/in-process.ts";
import { expectProblem, type HttpResult, PROBLEM_CODES, uniqueThreadId } from "./contract.ts";
import { readJsonResult } from "../support/http.ts";

/**
 * Every limit of API.md at its edge (the limit accepted, one past it rejected), every
 * error code of this issue produced at least once, and "bad input writes nothing":
 * after each rejected write the rollout holds exactly the keys it held before and the
 * thread's rolloutSeq is unchanged. In-process (real libSQL file + fs rollout).
 */

type TestApp = ReturnType<typeof createTestApp>;

const opened: TestApp[] = [];

function open(options: Parameters<typeof createTestApp>[0] = {}): TestApp {
  const app = createTestApp(options);
  opened.push(app);
  return app;
}

afterAll(() => {
  for (const app of opened) app.close();
});

async function send(
  t: TestApp,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<HttpResult> {
  return t.request(method, path, body, headers);
}

/** Sends exactly `init` (raw bodies: bytes, streams, no automatic content-type). */
async function sendRaw(t: TestApp, path: string, init: RequestInit): Promise<HttpResult> {
  const response = await t.app.request(path, init);
  return readJsonResult(response);
}

async function rolloutKeys(store: BlobStore): Promise<string[]> {
  const keys: string[] = [];
  for (;;) {
    const page = await store.list("tenants/", {
      limit: 1000,
      ...(keys.length ? { startAfter: keys[keys.length - 1] as string } : {}),
    });
    keys.push(...page);
    if (page.length < 1000) return keys;
  }
}

/** rolloutSeq of the thread, or null when it does not exist (strong read: the rollout's view). */
async function threadSeq(t: TestApp, threadId: string): Promise<number | null> {
  const read = await send(t, "GET", `/v1/threads/${threadId}`);
  if (read.status === 404) return null;
  expect(read.status).toBe(200);
  return read.json.thread.rolloutSeq as number;
}

/**
 * Runs a write that must be rejected with `status`/`code`, then proves it wrote nothing:
 * no rollout key appeared or vanished, and the thread is at the same rolloutSeq (or still absent).
 */
async function expectRejected(
  t: TestApp,
  threadId: string,
  status: number,
  code: (typeof PROBLEM_CODES)[number],
  write: () => Promise<HttpResult>,
): Promise<HttpResult> {
  const keysBefore = await rolloutKeys(t.blobStore);
  const seqBefore = await threadSeq(t, threadId);
  const result = await write();
  expectProblem(result, status, code);
  expect(await rolloutKeys(t.blobStore)).toEqual(keysBefore);
  expect(await threadSeq(t, threadId)).toBe(seqBefore);
  return result;
}

async function create(
  t: TestApp,
  threadId: string,
  body: Record<string, unknown>,
  expected = 201,
): Promise<HttpResult> {
  const result = await send(t, "POST", `/v1/threads/${threadId}/artifacts`, body);
  expect({ status: result.status, body: result.json }).toMatchObject({ status: expected });
  return result;
}

const utf8 = (s: string) => new TextEncoder().encode(s).byteLength;

/** A string payload whose JSON.stringify is exactly `bytes` UTF-8 bytes: as many `unit`s as fit, then ASCII filler. */
function stringPayloadOfBytes(bytes: number, unit = "a"): string {
  const unitBytes = utf8(JSON.stringify(unit)) - 2;
  const units = Math.floor((bytes - 2) / unitBytes);
  const s = unit.repeat(units) + "a".repeat(bytes - 2 - units * unitBytes);
  expect(utf8(JSON.stringify(s))).toBe(bytes);
  return s;
}

function nested(depth: number): unknown {
  return JSON.parse("[".repeat(depth) + "]".repeat(depth));
}

describe("limits and error codes", () => {
  let t: TestApp;

  beforeAll(() => {
    t = open();
  });

  describe("threadId", () => {
    it("accepts 128 chars of [A-Za-z0-9._:-] and rejects 129", async () => {
      const base = `A${crypto.randomUUID().replace(/-/g, "")}._:-`;
      const ok = base + "z".repeat(128 - base.length);
      expect(ok).toHaveLength(128);
      const created = await create(t, ok, { artifactType: "t", payload: 1 });
      expect(created.json.thread.id).toBe(ok);
      expect(created.headers.get("location")).toBe(`/v1/threads/${ok}/artifacts/${created.json.artifact.id}`);
      expect((await send(t, "GET", `/v1/threads/${ok}`)).status).toBe(200);

      const tooLong = `${ok}z`;
      // No thread can be named tooLong: check the rollout keys and its 128-char prefix's seq.
      await expectRejected(
        t,
        ok,
        400,
        "invalid_request",
        () => send(t, "POST", `/v1/threads/${tooLong}/artifacts`, { artifactType: "t", payload: 1 }),
      );
      expectProblem(await send(t, "GET", `/v1/threads/${tooLong}`), 400, "invalid_request");
    });

    it("requires an alphanumeric first char and only [A-Za-z0-9._:-]", async () => {
      for (const bad of [".x", "-x", "_x", ":x", "x%20y", "x%2Fy", "x%C3%A9", "x~y", "x%00"]) {
        await expectRejected(
          t,
          "unused",
          400,
          "invalid_request",
          () => send(t, "POST", `/v1/threads/${bad}/artifacts`, { artifactType: "t", payload: 1 }),
        );
        expectProblem(await send(t, "GET", `/v1/threads/${bad}`), 400, "invalid_request");
      }
      for (const good of ["0", "Z", "a.b", "a..b", "a:b-c_d"]) {
        const threadId = `${good}${crypto.randomUUID().slice(0, 8)}`;
        await create(t, threadId, { artifactType: "t", payload: 1 });
      }
    });
  });

  describe("artifactType", () => {
    it("counts UTF-8 bytes: 128 accepted, 129 rejected", async () => {
      const threadId = uniqueThreadId("type");
      const accepted = ["a".repeat(128), "é".repeat(64), "😀".repeat(32), `${"€".repeat(42)}ab`];
      for (const artifactType of accepted) {
        expect(utf8(artifactType)).toBe(128);
        const created = await create(t, threadId, { artifactType, payload: 1 });
        expect(created.json.artifact.artifactType).toBe(artifactType);
      }
      // 65 "é" is 65 chars (well under 128) but 130 bytes.
      const rejected = ["a".repeat(129), `${"é".repeat(63)}abc`, "é".repeat(65), `${"😀".repeat(32)}a`];
      for (const artifactType of rejected) {
        expect(utf8(artifactType)).toBeGreaterThan(128);
        await expectRejected(
          t,
          threadId,
          400,
          "invalid_request",
          () => send(t, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType, payload: 1 }),
        );
      }
    });

    it("rejects empty, control characters and non-strings", async () => {
      const threadId = uniqueThreadId("type-bad");
      await create(t, threadId, { artifactType: "plan · v2 ✓", payload: 1 });
      for (
        const artifactType of [
          "",
          "a\u0000b",
          "a\nb",
          "\tplan",
          "plan\r",
          "a\u007fb",
          "a\u0085b",
          "\u001b[31m",
          7,
          null,
          ["plan"],
          {},
        ]
      ) {
        await expectRejected(
          t,
          threadId,
          400,
          "invalid_request",
          () => send(t, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType, payload: 1 }),
        );
      }
    });
  });

  describe("identityKey", () => {
    it("counts UTF-8 bytes: 256 accepted, 257 rejected", async () => {
      const threadId = uniqueThreadId("identity");
      const accepted = ["k".repeat(256), "é".repeat(128), "😀".repeat(64), `${"€".repeat(85)}a`];
      for (const identityKey of accepted) {
        expect(utf8(identityKey)).toBe(256);
        const created = await create(t, threadId, { artifactType: "t", identityKey, payload: 1 });
        expect(created.json.artifact.identityKey).toBe(identityKey);
        await create(t, threadId, { artifactType: "t", identityKey, payload: 1 }, 200);
      }
      const rejected = ["k".repeat(257), `${"é".repeat(128)}a`, "é".repeat(129), `${"😀".repeat(64)}a`];
      for (const identityKey of rejected) {
        expect(utf8(identityKey)).toBeGreaterThan(256);
        await expectRejected(
          t,
          threadId,
          400,
          "invalid_request",
          () => send(t, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "t", identityKey, payload: 1 }),
        );
      }
    });

    it("rejects empty, control characters and non-strings", async () => {
      const threadId = uniqueThreadId("identity-bad");
      await create(t, threadId, { artifactType: "t", payload: 1 });
      for (const identityKey of ["", "k\u0000", "k\nv", "\u0007", "k\u009f", 1, null, true, ["k"]]) {
        await expectRejected(
          t,
          threadId,
          400,
          "invalid_request",
          () => send(t, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "t", identityKey, payload: 1 }),
        );
      }
    });
  });

  describe("payload bound", () => {
    const MAX = 100;
    let small: TestApp;

    beforeAll(() => {
      small = open({ env: { MAX_PAYLOAD_BYTES: String(MAX) } });
    });

    it("accepts a payload serializing to exactly MAX_PAYLOAD_BYTES and rejects one byte more (413)", async () => {
      const threadId = uniqueThreadId("payload");
      for (const unit of ["a", "é", "😀", '"', "\n"]) {
        const exact = stringPayloadOfBytes(MAX, unit);
        const created = await create(small, threadId, { artifactType: "t", payload: exact });
        expect(created.json.artifact.payload).toBe(exact);
        const over = stringPayloadOfBytes(MAX + 1, unit);
        await expectRejected(
          small,
          threadId,
          413,
          "payload_too_large",
          () => send(small, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "t", payload: over }),
        );
      }
      // Objects count the same way: the compact JSON.stringify of the payload.
      const objectExact = { key: "v".repeat(MAX - utf8('{"key":""}')) };
      expect(utf8(JSON.stringify(objectExact))).toBe(MAX);
      await create(small, threadId, { artifactType: "t", payload: objectExact });
      const objectOver = { key: "v".repeat(MAX + 1 - utf8('{"key":""}')) };
      await expectRejected(
        small,
        threadId,
        413,
        "payload_too_large",
        () => send(small, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "t", payload: objectOver }),
      );
    });

    it("bounds the serialized payload, not the request's whitespace", async () => {
      const threadId = uniqueThreadId("payload-ws");
      const objectExact = { key: "v".repeat(MAX - utf8('{"key":""}')) };
      const pretty = JSON.stringify({ artifactType: "t", payload: objectExact }, null, 8);
      expect(utf8(pretty)).toBeGreaterThan(MAX + 20);
      const created = await send(small, "POST", `/v1/threads/${threadId}/artifacts`, pretty);
      expect(created.status).toBe(201);
      expect(created.json.artifact.payload).toEqual(objectExact);
    });

    it("applies the same bound to PATCH", async () => {
      const threadId = uniqueThreadId("payload-patch");
      const created = await create(small, threadId, { artifactType: "t", payload: 1 });
      const path = `/v1/threads/${threadId}/artifacts/${created.json.artifact.id}`;
      const ok = await send(small, "PATCH", path, { payload: stringPayloadOfBytes(MAX, "é") });
      expect(ok.status).toBe(200);
      expect(ok.json.artifact.version).toBe(2);
      await expectRejected(
        small,
        threadId,
        413,
        "payload_too_large",
        () => send(small, "PATCH", path, { payload: stringPayloadOfBytes(MAX + 1, "é") }),
      );
      expect((await send(small, "GET", path)).json.artifact.version).toBe(2);
    });

    it("bounds a merge patch's merged payload: exactly MAX_PAYLOAD_BYTES merges, one byte more is 413 and writes nothing", async () => {
      const threadId = uniqueThreadId("payload-merge");
      // 50 bytes stored; the patch adds a member that brings the merged payload to MAX or MAX + 1.
      const base = { a: "x".repeat(50 - utf8('{"a":""}')) };
      expect(utf8(JSON.stringify(base))).toBe(50);
      const created = await create(small, threadId, { artifactType: "t", payload: base });
      const path = `/v1/threads/${threadId}/artifacts/${created.json.artifact.id}`;
      const merge = { "content-type": "application/merge-patch+json" };
      // {"a":"…","b":"…"}: the member adds `,"b":""` (7 bytes) plus its value.
      const addingTo = (total: number) => ({ b: "y".repeat(total - 50 - utf8(',"b":""')) });
      const over = addingTo(MAX + 1);
      expect(utf8(JSON.stringify({ ...base, ...over }))).toBe(MAX + 1);
      await expectRejected(
        small,
        threadId,
        413,
        "payload_too_large",
        () => send(small, "PATCH", path, { payload: over }, merge),
      );
      const exact = addingTo(MAX);
      const ok = await send(small, "PATCH", path, { payload: exact }, merge);
      expect(ok.status).toBe(200);
      expect(utf8(JSON.stringify(ok.json.artifact.payload))).toBe(MAX);
      // A patch that shrinks it is checked on its result, not on its own size.
      const shrunk = await send(small, "PATCH", path, { payload: { b: null } }, merge);
      expect(shrunk.json.artifact.payload).toEqual(base);
    });

    it("refuses a body far over the bound: declared by Content-Length (unread) or streamed without one", async () => {
      const threadId = uniqueThreadId("payload-body");
      await create(small, threadId, { artifactType: "t", payload: 1 });
      const path = `/v1/threads/${threadId}/artifacts`;
      const huge = JSON.stringify({ artifactType: "t", payload: "x".repeat(1_000_000) });

      await expectRejected(small, threadId, 413, "payload_too_large", () =>
        sendRaw(small, path, {
          method: "POST",
          body: huge,
          headers: { "content-type": "application/json", "content-length": String(utf8(huge)) },
        }));

      // A declared length over the bound is refused before a byte is read.
      let declaredPulls = 0;
      const declared = new ReadableStream<Uint8Array>(
        {
          pull(controller) {
            declaredPulls++;
            controller.enqueue(new Uint8Array(64 * 1024).fill(0x20));
          },
        },
        { highWaterMark: 0 },
      );
      await expectRejected(small, threadId, 413, "payload_too_large", () =>
        sendRaw(small, path, {
          method: "POST",
          body: declared,
          headers: { "content-type": "application/json", "content-length": "50000000" },
          duplex: "half",
        } as RequestInit));
      expect(declaredPulls).toBe(0);

      // No Content-Length: the server reads until the bound, then cancels the stream.
      const chunk = new TextEncoder().encode(" ".repeat(16 * 1024));
      const totalChunks = 256;
      let pulled = 0;
      let cancelled = false;
      const streamed = new ReadableStream<Uint8Array>(
        {
          pull(controller) {
            if (pulled === totalChunks) return controller.close();
            pulled++;
            controller.enqueue(chunk);
          },
          cancel() {
            cancelled = true;
          },
        },
        { highWaterMark: 0 },
      );
      await expectRejected(
        small,
        threadId,
        413,
        "payload_too_large",
        () =>
          sendRaw(
            small,
            path,
            {
              method: "POST",
              body: streamed,
              headers: { "content-type": "application/json" },
              duplex: "half",
            } as RequestInit,
          ),
      );
      expect(cancelled).toBe(true);
      expect(pulled).toBeLessThan(totalChunks);

      const patchPath = `${path}/0190a000-0000-7000-8000-000000000000`;
      await expectRejected(small, threadId, 413, "payload_too_large", () =>
        sendRaw(small, patchPath, {
          method: "PATCH",
          body: JSON.stringify({ payload: "x".repeat(1_000_000) }),
          headers: { "content-type": "application/json" },
        }));
    });

    it("uses 65,536 bytes by default", async () => {
      expect(t.config.maxPayloadBytes).toBe(65_536);
      const threadId = uniqueThreadId("payload-default");
      const exact = stringPayloadOfBytes(65_536);
      const created = await create(t, threadId, { artifactType: "t", payload: exact });
      expect(created.json.artifact.payload).toHaveLength(65_534);
      await expectRejected(
        t,
        threadId,
        413,
        "payload_too_large",
        () =>
          send(t, "POST", `/v1/threads/${threadId}/artifacts`, {
            artifactType: "t",
            payload: stringPayloadOfBytes(65_537),
          }),
      );
    });

    it("rejects a payload nested deeper than 512 arrays/objects with 400, never a 5xx", async () => {
      const threadId = uniqueThreadId("payload-depth");
      const created = await create(t, threadId, { artifactType: "t", identityKey: "deep", payload: nested(512) });
      // The idempotent retry compares payloads structurally, at full depth.
      await create(t, threadId, { artifactType: "t", identityKey: "deep", payload: nested(512) }, 200);
      const objects = (depth: number) => `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
      const path = `/v1/threads/${threadId}/artifacts/${created.json.artifact.id}`;
      expect((await send(t, "PATCH", path, `{"payload":${objects(511)}}`)).status).toBe(200);
      for (const depth of [513, 3000, 30_000]) {
        const arrays = `${"[".repeat(depth)}${"]".repeat(depth)}`;
        await expectRejected(
          t,
          threadId,
          400,
          "invalid_request",
          () => send(t, "POST", `/v1/threads/${threadId}/artifacts`, `{"artifactType":"t","payload":${arrays}}`),
        );
        await expectRejected(
          t,
          threadId,
          400,
          "invalid_request",
          () => send(t, "PATCH", path, `{"payload":${arrays}}`),
        );
      }
      await expectRejected(
        t,
        threadId,
        400,
        "invalid_request",
        () => send(t, "PATCH", path, `{"payload":${objects(513)}}`),
      );
    });
  });

  describe("the many-threads stream", () => {
    const stream = async (query: string) => {
      const response = await t.app.request(`/v1/events?${query}`);
      const status = response.status;
      const type = response.headers.get("content-type") ?? "";
      if (type.startsWith("text/event-stream")) await response.body?.cancel();
      else await response.text();
      return { status, type };
    };
    const ids = (n: number) => Array.from({ length: n }, (_, i) => `lim-${i}`).join(",");

    it("takes 100 threads and refuses 101; takes a 128-char id (with :seq) and refuses 129", async () => {
      expect(await stream(`threads=${ids(100)}`)).toMatchObject({ status: 200, type: "text/event-stream" });
      expect(await stream(`threads=${ids(101)}`)).toMatchObject({ status: 400 });
      expect(await stream(`threads=${"a".repeat(128)}:5`)).toMatchObject({ status: 200 });
      expect(await stream(`threads=${"a".repeat(129)}`)).toMatchObject({ status: 400 });
      expect(await stream(`threads=a:999999999999999`)).toMatchObject({ status: 200 });
      // Past 15 digits the suffix is no seq, and "a:1000000000000000" is a valid thread id: followed from 0.
      expect(await stream(`threads=a:1000000000000000`)).toMatchObject({ status: 200 });
    });
  });

  describe("MAX_ARTIFACTS_PER_THREAD", () => {
    it("accepts N artifacts, rejects N+1 with 422 thread_full, still answers idempotent retries", async () => {
      const full = open({ env: { MAX_ARTIFACTS_PER_THREAD: "3" } });
      const threadId = uniqueThreadId("full");
      const first = await create(full, threadId, { artifactType: "t", identityKey: "k", payload: { n: 1 } });
      await create(full, threadId, { artifactType: "t", payload: 2 });
      const third = await create(full, threadId, { artifactType: "t", payload: 3 });

      await expectRejected(
        full,
        threadId,
        422,
        "thread_full",
        () => send(full, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "t", payload: 4 }),
      );
      await expectRejected(
        full,
        threadId,
        422,
        "thread_full",
        () =>
          send(full, "POST", `/v1/threads/${threadId}/artifacts`, {
            artifactType: "t",
            identityKey: "new",
            payload: 4,
          }),
      );
      // The existing identity is not a new artifact: its retry is still 200, a changed payload still 409.
      const retry = await create(full, threadId, { artifactType: "t", identityKey: "k", payload: { n: 1 } }, 200);
      expect(retry.json.artifact.id).toBe(first.json.artifact.id);
      expect(retry.json.thread.rolloutSeq).toBe(3);
      await expectRejected(
        full,
        threadId,
        409,
        "identity_conflict",
        () =>
          send(full, "POST", `/v1/threads/${threadId}/artifacts`, {
            artifactType: "t",
            identityKey: "k",
            payload: { n: 2 },
          }),
      );

      // A full thread still takes updates; a removal makes room; other threads are unaffected.
      const path = `/v1/threads/${threadId}/artifacts/${third.json.artifact.id}`;
      expect((await send(full, "PATCH", path, { payload: 33 })).status).toBe(200);
      await create(full, uniqueThreadId("full-other"), { artifactType: "t", payload: 1 });
      expect((await send(full, "DELETE", path)).status).toBe(200);
      const again = await create(full, threadId, { artifactType: "t", payload: 4 });
      expect(again.json.thread.rolloutSeq).toBe(6);
      await expectRejected(
        full,
        threadId,
        422,
        "thread_full",
        () => send(full, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "t", payload: 5 }),
      );
    });
  });

  describe("list limit and cursor", () => {
    it("accepts limit 1 and 200, rejects 0 and 201", async () => {
      for (let i = 0; i < 3; i++) await create(t, uniqueThreadId("limit"), { artifactType: "t", payload: i });
      const one = await send(t, "GET", "/v1/threads?limit=1");
      expect(one.status).toBe(200);
      expect(one.json.threads).toHaveLength(1);
      expect(typeof one.json.nextCursor).toBe("string");
      const max = await send(t, "GET", "/v1/threads?limit=200");
      expect(max.status).toBe(200);
      expect(max.json.threads.length).toBeGreaterThanOrEqual(3);
      for (const limit of ["0", "201", "abc", "", "1e2", "0x10", "-5"]) {
        expectProblem(await send(t, "GET", `/v1/threads?limit=${limit}`), 400, "invalid_request");
      }
    });

    it("rejects a cursor issued by a deployment with another CURSOR_SECRET", async () => {
      const a = open({ env: { CURSOR_SECRET: "secret-a" } });
      const b = open({ env: { CURSOR_SECRET: "secret-b" } });
      for (const app of [a, b]) {
        await create(app, "shared-1", { artifactType: "t", payload: 1 });
        await create(app, "shared-2", { artifactType: "t", payload: 1 });
      }
      const cursor: string = (await send(a, "GET", "/v1/threads?limit=1")).json.nextCursor;
      expect((await send(a, "GET", `/v1/threads?limit=1&cursor=${encodeURIComponent(cursor)}`)).status).toBe(200);
      expectProblem(
        await send(b, "GET", `/v1/threads?limit=1&cursor=${encodeURIComponent(cursor)}`),
        400,
        "invalid_request",
      );
    });
  });

  describe("invalid_request", () => {
    let threadId: string;
    let artifactPath: string;

    beforeAll(async () => {
      threadId = uniqueThreadId("invalid");
      const created = await create(t, threadId, { artifactType: "t", identityKey: "k", payload: 1 });
      artifactPath = `/v1/threads/${threadId}/artifacts/${created.json.artifact.id}`;
    });

    it("rejects bodies that are not JSON objects of the right shape, on create and update", async () => {
      const createPath = `/v1/threads/${threadId}/artifacts`;
      const createBodies: unknown[] = [
        "{",
        '{"artifactType":"t","payload":1,}',
        "",
        "   ",
        "[]",
        '"text"',
        "null",
        "42",
        { artifactType: "t" },
        { payload: 1 },
        { artifactType: "t", payload: 1, extra: 1 },
        { artifactType: "t", payload: 1, id: "0190a000-0000-7000-8000-000000000000" },
        { artifactType: "t", payload: 1, version: 2 },
      ];
      for (const body of createBodies) {
        await expectRejected(t, threadId, 400, "invalid_request", () => send(t, "POST", createPath, body));
      }
      const updateBodies: unknown[] = ["{", "[]", "null", {}, { payload: 1, artifactType: "t" }, {
        payload: 1,
        identityKey: "k",
      }, { data: 1 }];
      for (const body of updateBodies) {
        await expectRejected(t, threadId, 400, "invalid_request", () => send(t, "PATCH", artifactPath, body));
      }
    });

    it("rejects a body that is not UTF-8", async () => {
      await expectRejected(t, threadId, 400, "invalid_request", () =>
        sendRaw(t, `/v1/threads/${threadId}/artifacts`, {
          method: "POST",
          body: new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
          headers: { "content-type": "application/json" },
        }));
    });

    it("rejects a malformed If-Match on update and remove", async () => {
      for (
        const ifMatch of ["1", '"abc"', '"0"', '"-1"', '"1.5"', "W/", '"1', '"1" "2"', "", '"99999999999999999999"']
      ) {
        await expectRejected(
          t,
          threadId,
          400,
          "invalid_request",
          () => send(t, "PATCH", artifactPath, { payload: 2 }, { "if-match": ifMatch }),
        );
        await expectRejected(
          t,
          threadId,
          400,
          "invalid_request",
          () => send(t, "DELETE", artifactPath, undefined, { "if-match": ifMatch }),
        );
      }
    });

    it("rejects a malformed artifact id in the path", async () => {
      for (
        const id of [
          "not-a-uuid",
          "0190a000000070008000000000000000",
          "0190a000-0000-7000-8000-00000000000g",
          "0190a000-0000-7000-8000-0000000000001",
        ]
      ) {
        const path = `/v1/threads/${threadId}/artifacts/${id}`;
        expectProblem(await send(t, "GET", path), 400, "invalid_request");
        await expectRejected(t, threadId, 400, "invalid_request", () => send(t, "PATCH", path, { payload: 2 }));
        await expectRejected(t, threadId, 400, "invalid_request", () => send(t, "DELETE", path));
      }
    });
  });

  describe("unsupported_media_type", () => {
    it("answers 415 for a non-JSON or missing content type, and accepts JSON with parameters", async () => {
      const threadId = uniqueThreadId("media");
      const created = await create(t, threadId, { artifactType: "t", payload: 1 });
      const createPath = `/v1/threads/${threadId}/artifacts`;
      const artifactPath = `${createPath}/${created.json.artifact.id}`;
      const body = JSON.stringify({ artifactType: "t", payload: 2 });
      for (
        const contentType of [
          "text/plain",
          "text/plain;charset=UTF-8",
          "application/x-www-form-urlencoded",
          "multipart/form-data; boundary=x",
          "application/jsonx",
          "json",
        ]
      ) {
        await expectRejected(
          t,
          threadId,
          415,
          "unsupported_media_type",
          () => send(t, "POST", createPath, body, { "content-type": contentType }),
        );
      }
      await expectRejected(
        t,
        threadId,
        415,
        "unsupported_media_type",
        () => sendRaw(t, createPath, { method: "POST", body: new TextEncoder().encode(body) }),
      );
      await expectRejected(
        t,
        threadId,
        415,
        "unsupported_media_type",
        () => send(t, "PATCH", artifactPath, JSON.stringify({ payload: 2 }), { "content-type": "text/plain" }),
      );
      await expectRejected(
        t,
        threadId,
        415,
        "unsupported_media_type",
        () =>
          sendRaw(t, artifactPath, { method: "PATCH", body: new TextEncoder().encode(JSON.stringify({ payload: 2 })) }),
      );

      const withCharset = await send(t, "POST", createPath, body, {
        "content-type": "application/json; charset=utf-8",
      });
      expect(withCharset.status).toBe(201);
      const upper = await send(t, "PATCH", artifactPath, JSON.stringify({ payload: 3 }), {
        "content-type": "Application/JSON",
      });
      expect(upper.status).toBe(200);
    });
  });

  describe("not found, conflicts", () => {
    it("produces thread_not_found, artifact_not_found, identity_conflict and version_conflict without writing", async () => {
      const threadId = uniqueThreadId("codes");
      const created = await create(t, threadId, { artifactType: "t", identityKey: "k", payload: 1 });
      const artifactPath = `/v1/threads/${threadId}/artifacts/${created.json.artifact.id}`;
      const unknownThread = uniqueThreadId("codes-missing");
      const unknownArtifact = `/v1/threads/${threadId}/artifacts/0190a000-0000-7000-8000-0000000000ff`;

      await expectRejected(
        t,
        unknownThread,
        404,
        "thread_not_found",
        () => send(t, "PATCH", `/v1/threads/${unknownThread}/artifacts/${created.json.artifact.id}`, { payload: 2 }),
      );
      await expectRejected(
        t,
        unknownThread,
        404,
        "thread_not_found",
        () => send(t, "DELETE", `/v1/threads/${unknownThread}/artifacts/${created.json.artifact.id}`),
      );
      await expectRejected(
        t,
        threadId,
        404,
        "artifact_not_found",
        () => send(t, "PATCH", unknownArtifact, { payload: 2 }),
      );
      await expectRejected(t, threadId, 404, "artifact_not_found", () => send(t, "DELETE", unknownArtifact));
      await expectRejected(
        t,
        threadId,
        409,
        "identity_conflict",
        () => send(t, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "t", identityKey: "k", payload: 2 }),
      );
      await expectRejected(
        t,
        threadId,
        412,
        "version_conflict",
        () => send(t, "PATCH", artifactPath, { payload: 2 }, { "if-match": '"2"' }),
      );
      await expectRejected(
        t,
        threadId,
        412,
        "version_conflict",
        () => send(t, "DELETE", artifactPath, undefined, { "if-match": '"2"' }),
      );
    });
  });

  describe("unavailable", () => {
    afterEach(() => {
      vi.restoreAllMocks();
    });

    it("answers 503 + Retry-After while the rollout store fails, and recovers", async () => {
      vi.spyOn(console, "error").mockImplementation(() => {});
      vi.spyOn(console, "warn").mockImplementation(() => {});
      const store = new SwitchableBlobStore(new MemoryBlobStore());
      const down = open({ blobStore: store });
      const threadId = uniqueThreadId("down");
      const created = await create(down, threadId, { artifactType: "t", payload: 1 });
      const artifactPath = `/v1/threads/${threadId}/artifacts/${created.json.artifact.id}`;

      store.down = true;
      const calls = [
        () => send(down, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "t", payload: 2 }),
        () =>
          send(down, "POST", `/v1/threads/${uniqueThreadId("down-new")}/artifacts`, { artifactType: "t", payload: 2 }),
        () => send(down, "PATCH", artifactPath, { payload: 2 }),
        () => send(down, "DELETE", artifactPath),
        () => send(down, "GET", `/v1/threads/${threadId}`),
      ];
      for (const call of calls) {
        const result = await call();
        expectProblem(result, 503, "unavailable");
        expect(result.headers.get("retry-after")).toMatch(/^[1-9][0-9]*$/);
        expect(result.json.detail).not.toMatch(/blob store down/);
      }
      const health = await send(down, "GET", "/healthz");
      expect(health.status).toBe(503);
      expect(health.json).toEqual({ ok: false, cache: "up", rollout: "down" });

      store.down = false;
      expect(await rolloutKeys(store)).toEqual([expect.stringMatching(/\/commits\/000000000001\.json$/)]);
      expect((await send(down, "GET", "/healthz")).json).toEqual({ ok: true, cache: "up", rollout: "up" });
      const after = await create(down, threadId, { artifactType: "t", payload: 2 });
      expect(after.json.thread.rolloutSeq).toBe(2);
      expect((await send(down, "GET", artifactPath)).json.artifact).toEqual(created.json.artifact);
    });
  });
});

/** Delegates to `inner`, or throws on every call while `down`: a rollout store outage. */
class SwitchableBlobStore implements BlobStore {
  down = false;
  readonly inner: BlobStore;

  constructor(inner: BlobStore) {
    this.inner = inner;
  }

  #check(): void {
    if (this.down) throw new Error("blob store down");
  }
  async get(key: string): Promise<string | null> {
    this.#check();
    return this.inner.get(key);
  }
  async putIfAbsent(key: string, body: string): Promise<PutIfAbsentResult> {
    this.#check();
    return this.inner.putIfAbsent(key, body);
  }
  async put(key: string, body: string): Promise<void> {
    this.#check();
    return this.inner.put(key, body);
  }
  async exists(key: string): Promise<boolean> {
    this.#check();
    return this.inner.exists(key);
  }

  async delete(key: string): Promise<void> {
    this.#check();
    return this.inner.delete(key);
  }
  async list(prefix: string, options?: ListOptions): Promise<string[]> {
    this.#check();
    return this.inner.list(prefix, options);
  }
}
