// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
import { SpecSseParser } from "../support/sse.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readJsonResult } from "../support/http.ts";
import { describeRateLimits } from "./contract-limits.ts";
import { describeDeletion } from "./contract-delete.ts";
import { describeHistory } from "./contract-history.ts";
import { describeManyThreadStreams } from "./contract-many.ts";
import { describeIdempotency } from "./contract-idempotency.ts";
import { describeMergePatches } from "./contract-merge.ts";

/**
 * The HTTP contract of API.md (everything but authentication), spoken
 * only through `fetch`, so the same suite runs against the in-process app, the Node
 * server process, `deno serve` and a Worker in workerd. No `node:*` imports here.
 */

export interface HttpTarget {
  fetch: (path: string, init?: RequestInit) => Promise<Response>;
  close: () => Promise<void>;
  /**
   * Stops the server (as a deploy would: streams end, the process goes) and starts it
   * again on the same stores; `fetch` then reaches the new one.
   */
  restart: () => Promise<void>;
  /**
   * Another server on the same stores, as a second process of a deployment is (absent
   * where there is no such thing: a Worker's isolates all go through the thread's one
   * sequencer, so concurrent requests to the one target are what "two at once" means).
   * The caller closes it.
   */
  sibling?: () => Promise<{ fetch: HttpTarget["fetch"]; close: () => Promise<void> }>;
}

/** One `artifact-updated` event as a stream sent it: its SSE id and its data. */
export interface StreamedEvent {
  id: string;
  threadId: string;
  seq: number;
  op: string;
  artifact: any;
}

/** What the parts of the contract suite share: the target and the calls every test makes. */
export interface ContractContext {
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<HttpResult>;
  create(threadId: string, body: Record<string, unknown>, expected?: number): Promise<HttpResult>;
  headSeq(threadId: string): Promise<number>;
  /** The first `count` events of one thread's stream. */
  readEvents(threadId: string, count: number): Promise<StreamedEvent[]>;
  /** Opens an event stream (`path` with its query) and reads until `count` events arrived. */
  readSse(path: string, count: number, headers?: Record<string, string>, on?: HttpTarget): Promise<StreamedEvent[]>;
  target(): HttpTarget;
  restart(): Promise<void>;
  /** Another target of the same kind, e.g. with authentication configured (the caller closes it). */
  makeTarget: MakeHttpTarget;
}

export type MakeHttpTarget = (env: Record<string, string>) => Promise<HttpTarget>;

export const PROBLEM_CODES = [
  "invalid_request",
  "payload_too_large",
  "unsupported_media_type",
  "thread_not_found",
  "artifact_not_found",
  "identity_conflict",
  "thread_exists",
  "idempotency_key_in_flight",
  "version_conflict",
  "thread_full",
  "webhook_not_found",
  "too_many_webhooks",
  "idempotency_key_reused",
  "unauthorized",
  "rate_limited",
  "unavailable",
] as const;

export const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** A generated request id (crypto.randomUUID). */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** What a request id may be (API.md). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const RFC3339_MS_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const ARTIFACT_KEYS = [
  "artifactType",
  "createdAt",
  "id",
  "identityKey",
  "payload",
  "seq",
  "threadId",
  "updatedAt",
  "version",
];
const THREAD_VIEW_KEYS = ["artifacts", "createdAt", "id", "rolloutSeq", "updatedAt"];

export interface HttpResult {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

/** A thread id no other test (or earlier run against the same store) uses. */
export function uniqueThreadId(label: string): string {
  return `${label}-${crypto.randomUUID().slice(0, 13)}`;
}

export function expectTimestamp(value: unknown): void {
  expect(value).toMatch(RFC3339_MS_UTC);
  expect(new Date(value as string).toISOString()).toBe(value);
}

export function expectArtifactShape(artifact: any): void {
  expect(Object.keys(artifact).sort()).toEqual(ARTIFACT_KEYS);
  expect(artifact.id).toMatch(UUID_V7);
  expect(typeof artifact.threadId).toBe("string");
  expect(typeof artifact.artifactType).toBe("string");
  expect(artifact.identityKey === null || typeof artifact.identityKey === "string").toBe(true);
  expect(Number.isInteger(artifact.version) && artifact.version >= 1).toBe(true);
  expect(Number.isInteger(artifact.seq) && artifact.seq >= 1).toBe(true);
  expectTimestamp(artifact.createdAt);
  expectTimestamp(artifact.updatedAt);
  expect(artifact.updatedAt >= artifact.createdAt).toBe(true);
}

export function expectThreadViewShape(thread: any): void {
  // `forkedFrom` only on a fork.
  const keys = Object.keys(thread).filter((key) => key !== "forkedFrom" || "threadId" in thread.forkedFrom);
  expect(keys.filter((key) => key !== "forkedFrom").sort()).toEqual(THREAD_VIEW_KEYS);
  expect(Number.isInteger(thread.rolloutSeq) && thread.rolloutSeq >= 1).toBe(true);
  expectTimestamp(thread.createdAt);
  expectTimestamp(thread.updatedAt);
  expect(Array.isArray(thread.artifacts)).toBe(true);
  for (const artifact of thread.artifacts) {
    expectArtifactShape(artifact);
    expect(artifact.threadId).toBe(thread.id);
    expect(artifact.seq).toBeLessThanOrEqual(thread.rolloutSeq);
  }
}

/** RFC 9457 problem+json with exactly the fields of API.md and `status` equal to the HTTP status. */
export function expectProblem(result: HttpResult, status: number, code: (typeof PROBLEM_CODES)[number]): void {
  expect({ status: result.status, code: result.json?.code, text: result.text.slice(0, 300) }).toMatchObject({
    status,
    code,
  });
  expect(result.headers.get("content-type") ?? "").toMatch(/^application\/problem\+json\b/);
  expectProblemBody(result, status);
}

/** The problem body of API.md, its `requestId` the response's `X-Request-Id`. */
function expectProblemBody(result: HttpResult, status: number): void {
  const body = result.json;
  expect(Object.keys(body).sort()).toEqual(["code", "detail", "requestId", "status", "title", "type"]);
  expect(body.requestId).toMatch(REQUEST_ID);
  expect(body.requestId).toBe(result.headers.get("x-request-id"));
  expect(body.type).toBe("about:blank");
  expect(body.status).toBe(status);
  expect(PROBLEM_CODES).toContain(body.code);
  expect(typeof body.title).toBe("string");
  expect(body.title.length).toBeGreaterThan(0);
  expect(typeof body.detail).toBe("string");
  expect(body.detail.length).toBeGreaterThan(0);
}

export function describeHttpContract(name: string, makeTarget: MakeHttpTarget): void {
  describe(`HTTP contract (${name})`, () => {
    let target: HttpTarget | undefined;

    beforeAll(async () => {
      target = await makeTarget({});
    });

    afterAll(async () => {
      await target?.close();
    });

    /** Sends JSON (objects are serialized; strings are sent as they are) and reads the whole answer. */
    async function call(
      method: string,
      path: string,
      body?: unknown,
      headers: Record<string, string> = {},
    ): Promise<HttpResult> {
      if (!target) throw new Error("target not started");
      const init: RequestInit = { method, headers: { ...headers } };
      if (body !== undefined) {
        init.body = typeof body === "string" ? body : JSON.stringify(body);
        const h = init.headers as Record<string, string>;
        if (!Object.keys(h).some((k) => k.toLowerCase() === "content-type")) h["content-type"] = "application/json";
      }
      const response = await target.fetch(path, init);
      return readJsonResult(response);
    }

    async function create(threadId: string, body: Record<string, unknown>, expected = 201): Promise<HttpResult> {
      const result = await call("POST", `/v1/threads/${threadId}/artifacts`, body);
      expect({ status: result.status, body: result.json }).toMatchObject({ status: expected });
      return result;
    }

    async function readThread(threadId: string, query = ""): Promise<HttpResult> {
      return call("GET", `/v1/threads/${threadId}${query}`);
    }

    async function headSeq(threadId: string): Promise<number> {
      const result = await readThread(threadId);
      expect(result.status).toBe(200);
      return result.json.thread.rolloutSeq as number;
    }

    /** Reads a stream with a parser written from the SSE spec until `count` artifact-updated events arrived. */
    async function readStreamed(
      path: string,
      count: number,
      headers: Record<string, string> = {},
      on: HttpTarget | undefined = target,
    ): Promise<{ parser: SpecSseParser; events: StreamedEvent[] }> {
      if (!on) throw new Error("target not started");
      const controller = new AbortController();
      const response = await on.fetch(path, {
        headers: { accept: "text/event-stream", ...headers },
        signal: controller.signal,
      });
      expect({ status: response.status, path }).toEqual({ status: 200, path });
      expect(response.headers.get("content-type") ?? "").toMatch(/^text\/event-stream\b/);
      const parser = new SpecSseParser();
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      const decoder = new TextDecoder();
      const updates = () => parser.events.filter((e) => e.type === "artifact-updated");
      try {
        while (updates().length < count) {
          const { done, value } = await reader.read();
          if (done) throw new Error(`stream ended after ${updates().length} of ${count} events`);
          parser.push(decoder.decode(value, { stream: true }));
        }
      } finally {
        controller.abort();
        await reader.cancel().catch(() => {});
      }
      return { parser, events: updates().slice(0, count).map((e) => ({ id: e.lastEventId, ...JSON.parse(e.data) })) };
    }

    const readSse = async (path: string, count: number, headers?: Record<string, string>, on?: HttpTarget) =>
      (await readStreamed(path, count, headers, on ?? target)).events;

    const ctx: ContractContext = {
      call,
      create,
      headSeq,
      readEvents: (threadId, count) => readSse(`/v1/threads/${threadId}/events`, count),
      readSse,
      target: () => {
        if (!target) throw new Error("target not started");
        return target;
      },
      restart: () => ctx.target().restart(),
      makeTarget,
    };

    describe("create-artifact", () => {
      it("answers 201 with the exact Location, the artifact and the thread", async () => {
        const threadId = uniqueThreadId("create");
        const result = await create(threadId, { artifactType: "plan", payload: { steps: ["a", "b"], done: false } });
        expect(result.headers.get("content-type") ?? "").toMatch(/^application\/json\b/);
        expect(Object.keys(result.json).sort()).toEqual(["artifact", "thread"]);
        const { artifact, thread } = result.json;
        expectArtifactShape(artifact);
        expect(result.headers.get("location")).toBe(`/v1/threads/${threadId}/artifacts/${artifact.id}`);
        expect(artifact).toMatchObject({
          threadId,
          artifactType: "plan",
          identityKey: null,
          payload: { steps: ["a", "b"], done: false },
          version: 1,
          seq: 1,
        });
        expect(artifact.updatedAt).toBe(artifact.createdAt);
        expect(thread).toEqual({ id: threadId, rolloutSeq: 1 });
      });

      it("gives each create the next seq and a distinct id; without identityKey, equal creates are distinct artifacts", async () => {
        const threadId = uniqueThreadId("create-seq");
        const first = await create(threadId, { artifactType: "note", payload: "same" });
        const second = await create(threadId, { artifactType: "note", payload: "same" });
        const third = await create(threadId, { artifactType: "note", payload: null, identityKey: "k" });
        expect([first.json.artifact.seq, second.json.artifact.seq, third.json.artifact.seq]).toEqual([1, 2, 3]);
        expect([first.json.thread.rolloutSeq, second.json.thread.rolloutSeq, third.json.thread.rolloutSeq]).toEqual([
          1,
          2,
          3,
        ]);
        expect(new Set([first.json.artifact.id, second.json.artifact.id, third.json.artifact.id]).size).toBe(3);
        expect(third.json.artifact.identityKey).toBe("k");
        expect(third.json.artifact.payload).toBeNull();
        const read = await readThread(threadId);
        expect(read.json.thread.artifacts.map((a: any) => a.id)).toEqual([
          first.json.artifact.id,
          second.json.artifact.id,
          third.json.artifact.id,
        ]);
      });

      it("is idempotent for an existing identity with an equal payload: 200, same artifact, nothing appended", async () => {
        const threadId = uniqueThreadId("idem");
        const body = { artifactType: "plan", identityKey: "plan:main", payload: { a: 1 } };
        const first = await create(threadId, body);
        await create(threadId, { artifactType: "other", payload: 1 });
        const retry = await create(threadId, body, 200);
        expect(retry.json.artifact).toEqual(first.json.artifact);
        expect(retry.json.thread).toEqual({ id: threadId, rolloutSeq: 2 });
        expect(await headSeq(threadId)).toBe(2);
        const read = await readThread(threadId);
        expect(read.json.thread.artifacts).toHaveLength(2);
      });

      it("compares payloads structurally: the same object with keys in another order is equal", async () => {
        const threadId = uniqueThreadId("idem-order");
        const first = await create(threadId, {
          artifactType: "plan",
          identityKey: "k",
          payload: { a: 1, b: { c: [1, { x: true, y: null }], d: "s" } },
        });
        const retry = await call(
          "POST",
          `/v1/threads/${threadId}/artifacts`,
          '{"payload":{"b":{"d":"s","c":[1,{"y":null,"x":true}]},"a":1},"identityKey":"k","artifactType":"plan"}',
        );
        expect(retry.status).toBe(200);
        expect(retry.json.artifact.id).toBe(first.json.artifact.id);
        expect(await headSeq(threadId)).toBe(1);
      });

      it("answers 409 identity_conflict for an existing identity with a different payload, and appends nothing", async () => {
        const threadId = uniqueThreadId("conflict");
        const first = await create(threadId, { artifactType: "plan", identityKey: "k", payload: { list: [1, 2] } });
        for (
          const payload of [{ list: [2, 1] }, { list: [1, 2], extra: true }, { list: [1, 2, 3] }, [1, 2], "x", null]
        ) {
          const result = await call("POST", `/v1/threads/${threadId}/artifacts`, {
            artifactType: "plan",
            identityKey: "k",
            payload,
          });
          expectProblem(result, 409, "identity_conflict");
        }
        expect(await headSeq(threadId)).toBe(1);
        const read = await readThread(threadId);
        expect(read.json.thread.artifacts).toEqual([first.json.artifact]);
      });

      it("keys identity by (threadId, artifactType, identityKey)", async () => {
        const threadId = uniqueThreadId("identity");
        const otherThread = uniqueThreadId("identity-other");
        const a = await create(threadId, { artifactType: "plan", identityKey: "k", payload: 1 });
        const b = await create(threadId, { artifactType: "preview", identityKey: "k", payload: 2 });
        const c = await create(otherThread, { artifactType: "plan", identityKey: "k", payload: 3 });
        expect(new Set([a.json.artifact.id, b.json.artifact.id, c.json.artifact.id]).size).toBe(3);
        expect(c.json.thread).toEqual({ id: otherThread, rolloutSeq: 1 });
      });

      it("lets a removed identity be created again, as a new artifact", async () => {
        const threadId = uniqueThreadId("recreate");
        const first = await create(threadId, { artifactType: "plan", identityKey: "k", payload: 1 });
        const removed = await call("DELETE", `/v1/threads/${threadId}/artifacts/${first.json.artifact.id}`);
        expect(removed.status).toBe(200);
        const again = await create(threadId, { artifactType: "plan", identityKey: "k", payload: 1 });
        expect(again.json.artifact.id).not.toBe(first.json.artifact.id);
        expect(again.json.artifact).toMatchObject({ version: 1, seq: 3 });
      });
    });

    describe("read-thread", () => {
      it("returns the thread with its artifacts in creation order, an ETag and the source", async () => {
        const threadId = uniqueThreadId("read");
        const a = await create(threadId, { artifactType: "t", payload: "a" });
        const b = await create(threadId, { artifactType: "t", payload: "b" });
        const c = await create(threadId, { artifactType: "t", payload: "c" });
        const updated = await call("PATCH", `/v1/threads/${threadId}/artifacts/${a.json.artifact.id}`, {
          payload: "a2",
        });
        expect(updated.status).toBe(200);

        const read = await readThread(threadId);
        expect(read.status).toBe(200);
        expect(read.headers.get("content-type") ?? "").toMatch(/^application\/json\b/);
        expect(read.headers.get("etag")).toBe('"4"');
        expect(["cache", "rollout", "repaired"]).toContain(read.headers.get("x-artifacts-source"));
        expect(Object.keys(read.json)).toEqual(["thread"]);
        const thread = read.json.thread;
        expectThreadViewShape(thread);
        expect(thread).toMatchObject({ id: threadId, rolloutSeq: 4, createdAt: a.json.artifact.createdAt });
        expect(thread.updatedAt).toBe(updated.json.artifact.updatedAt);
        expect(thread.artifacts).toEqual([updated.json.artifact, b.json.artifact, c.json.artifact]);
      });

      it("answers 304 to If-None-Match with the current ETag, and 200 once it is stale", async () => {
        const threadId = uniqueThreadId("etag");
        await create(threadId, { artifactType: "t", payload: 1 });
        const notModified = await call("GET", `/v1/threads/${threadId}`, undefined, { "if-none-match": '"1"' });
        expect(notModified.status).toBe(304);
        expect(notModified.text).toBe("");
        expect(notModified.headers.get("etag")).toBe('"1"');
        const weak = await call("GET", `/v1/threads/${threadId}`, undefined, { "if-none-match": 'W/"1"' });
        expect(weak.status).toBe(304);

        await create(threadId, { artifactType: "t", payload: 2 });
        const modified = await call("GET", `/v1/threads/${threadId}`, undefined, { "if-none-match": '"1"' });
        expect(modified.status).toBe(200);
        expect(modified.headers.get("etag")).toBe('"2"');
        expect(modified.json.thread.rolloutSeq).toBe(2);
      });

      it("serves consistency=cache and honours minSeq", async () => {
        const threadId = uniqueThreadId("consistency");
        await create(threadId, { artifactType: "t", payload: 1 });
        await create(threadId, { artifactType: "t", payload: 2 });
        const strong = await readThread(threadId, "?consistency=strong");
        const cached = await readThread(threadId, "?consistency=cache");
        expect(cached.status).toBe(200);
        expect(["cache", "rollout", "repaired"]).toContain(cached.headers.get("x-artifacts-source"));
        expect(cached.headers.get("etag")).toBe('"2"');
        expect(cached.json).toEqual(strong.json);

        for (const query of ["?minSeq=0", "?minSeq=1", "?minSeq=2", "?consistency=cache&minSeq=2"]) {
          const satisfied = await readThread(threadId, query);
          expect({ query, status: satisfied.status }).toEqual({ query, status: 200 });
          expect(satisfied.json.thread.rolloutSeq).toBe(2);
        }
        for (const query of ["?minSeq=3", "?consistency=cache&minSeq=3", "?minSeq=999999"]) {
          expectProblem(await readThread(threadId, query), 404, "thread_not_found");
        }
      });

      it("answers 404 thread_not_found for an unknown thread, whatever the query", async () => {
        const threadId = uniqueThreadId("missing");
        for (const query of ["", "?consistency=cache", "?minSeq=0", "?minSeq=1"]) {
          expectProblem(await readThread(threadId, query), 404, "thread_not_found");
        }
      });

      it("answers 400 for a bad threadId or query", async () => {
        const threadId = uniqueThreadId("badquery");
        await create(threadId, { artifactType: "t", payload: 1 });
        for (const query of ["?consistency=eventual", "?minSeq=-1", "?minSeq=abc", "?minSeq=1.5"]) {
          expectProblem(await readThread(threadId, query), 400, "invalid_request");
        }
        expectProblem(await readThread(".hidden"), 400, "invalid_request");
        expectProblem(await readThread("a%2Fb"), 400, "invalid_request");
      });
    });

    describe("get-artifact", () => {
      it("returns one artifact, 404 artifact_not_found for another id, 404 thread_not_found for another thread", async () => {
        const threadId = uniqueThreadId("get");
        const created = await create(threadId, { artifactType: "plan", identityKey: "k", payload: { n: 1 } });
        const id = created.json.artifact.id;
        const got = await call("GET", `/v1/threads/${threadId}/artifacts/${id}`);
        expect(got.status).toBe(200);
        expect(got.json).toEqual({ artifact: created.json.artifact });

        const unknownId = "0190a000-0000-7000-8000-000000000000";
        expectProblem(await call("GET", `/v1/threads/${threadId}/artifacts/${unknownId}`), 404, "artifact_not_found");
        expectProblem(
          await call("GET", `/v1/threads/${uniqueThreadId("nowhere")}/artifacts/${id}`),
          404,
          "thread_not_found",
        );
        expectProblem(await call("GET", `/v1/threads/${threadId}/artifacts/not-a-uuid`), 400, "invalid_request");
      });
    });

    describe("update-artifact", () => {
      it("replaces the payload, bumps version and seq, keeps identity and createdAt", async () => {
        const threadId = uniqueThreadId("update");
        const created = await create(threadId, { artifactType: "plan", identityKey: "k", payload: { n: 1 } });
        await create(threadId, { artifactType: "other", payload: 0 });
        const path = `/v1/threads/${threadId}/artifacts/${created.json.artifact.id}`;

        const updated = await call("PATCH", path, { payload: { n: 2 } });
        expect(updated.status).toBe(200);
        expect(Object.keys(updated.json).sort()).toEqual(["artifact", "thread"]);
        expectArtifactShape(updated.json.artifact);
        expect(updated.json.artifact).toMatchObject({
          id: created.json.artifact.id,
          threadId,
          artifactType: "plan",
          identityKey: "k",
          payload: { n: 2 },
          version: 2,
          seq: 3,
          createdAt: created.json.artifact.createdAt,
        });
        expect(updated.json.artifact.updatedAt >= created.json.artifact.updatedAt).toBe(true);
        expect(updated.json.thread).toEqual({ id: threadId, rolloutSeq: 3 });

        const got = await call("GET", path);
        expect(got.json.artifact).toEqual(updated.json.artifact);

        const again = await call("PATCH", path, { payload: [1, 2, 3] });
        expect(again.json.artifact).toMatchObject({ version: 3, seq: 4, payload: [1, 2, 3] });
      });

      it("checks If-Match: a match applies, a mismatch is 412 version_conflict and appends nothing, * matches any version", async () => {
        const threadId = uniqueThreadId("ifmatch");
        const created = await create(threadId, { artifactType: "plan", payload: 1 });
        const path = `/v1/threads/${threadId}/artifacts/${created.json.artifact.id}`;

        const matched = await call("PATCH", path, { payload: 2 }, { "if-match": '"1"' });
        expect(matched.status).toBe(200);
        expect(matched.json.artifact.version).toBe(2);

        const stale = await call("PATCH", path, { payload: 3 }, { "if-match": '"1"' });
        expectProblem(stale, 412, "version_conflict");
        const future = await call("PATCH", path, { payload: 3 }, { "if-match": '"3"' });
        expectProblem(future, 412, "version_conflict");
        expect(await headSeq(threadId)).toBe(2);
        expect((await call("GET", path)).json.artifact).toEqual(matched.json.artifact);

        const listed = await call("PATCH", path, { payload: 3 }, { "if-match": '"7", "2"' });
        expect(listed.status).toBe(200);
        expect(listed.json.artifact.version).toBe(3);

        // If-Match compares strongly: a weak tag never matches, even with the right version.
        const weakTag = await call("PATCH", path, { payload: 3 }, { "if-match": 'W/"3"' });
        expectProblem(weakTag, 412, "version_conflict");
        const any = await call("PATCH", path, { payload: 4 }, { "if-match": "*" });
        expect(any.status).toBe(200);
        expect(any.json.artifact).toMatchObject({ version: 4, payload: 4, seq: 4 });
      });

      it("answers 404 artifact_not_found / thread_not_found and appends nothing", async () => {
        const threadId = uniqueThreadId("update-missing");
        const created = await create(threadId, { artifactType: "plan", payload: 1 });
        const unknownId = "0190a000-0000-7000-8000-000000000001";
        expectProblem(
          await call("PATCH", `/v1/threads/${threadId}/artifacts/${unknownId}`, { payload: 2 }),
          404,
          "artifact_not_found",
        );
        expectProblem(
          await call("PATCH", `/v1/threads/${uniqueThreadId("nowhere")}/artifacts/${created.json.artifact.id}`, {
            payload: 2,
          }),
          404,
          "thread_not_found",
        );
        expect(await headSeq(threadId)).toBe(1);
      });
    });

    describe("remove-artifact", () => {
      it("removes: 200 {removed, thread}, then get is 404 and read-thread no longer lists it", async () => {
        const threadId = uniqueThreadId("remove");
        const keep = await create(threadId, { artifactType: "t", payload: "keep" });
        const gone = await create(threadId, { artifactType: "t", payload: "gone" });
        const path = `/v1/threads/${threadId}/artifacts/${gone.json.artifact.id}`;

        const removed = await call("DELETE", path);
        expect(removed.status).toBe(200);
        expect(removed.json).toEqual({
          removed: { id: gone.json.artifact.id, seq: 3 },
          thread: { id: threadId, rolloutSeq: 3 },
        });

        expectProblem(await call("GET", path), 404, "artifact_not_found");
        const read = await readThread(threadId);
        expect(read.json.thread.rolloutSeq).toBe(3);
        expect(read.json.thread.artifacts).toEqual([keep.json.artifact]);

        expectProblem(await call("DELETE", path), 404, "artifact_not_found");
        expectProblem(await call("PATCH", path, { payload: 1 }), 404, "artifact_not_found");
        expect(await headSeq(threadId)).toBe(3);
      });

      it("checks If-Match: a mismatch is 412 and keeps the artifact; a match removes it", async () => {
        const threadId = uniqueThreadId("remove-ifmatch");
        const created = await create(threadId, { artifactType: "t", payload: 1 });
        const path = `/v1/threads/${threadId}/artifacts/${created.json.artifact.id}`;
        await call("PATCH", path, { payload: 2 });

        expectProblem(await call("DELETE", path, undefined, { "if-match": '"1"' }), 412, "version_conflict");
        expect((await call("GET", path)).status).toBe(200);
        expect(await headSeq(threadId)).toBe(2);

        const removed = await call("DELETE", path, undefined, { "if-match": '"2"' });
        expect(removed.status).toBe(200);
        expect(removed.json.removed).toEqual({ id: created.json.artifact.id, seq: 3 });
      });

      it("keeps a thread whose last artifact was removed, with no artifacts", async () => {
        const threadId = uniqueThreadId("emptied");
        const created = await create(threadId, { artifactType: "t", payload: 1 });
        expect(
          (await call("DELETE", `/v1/threads/${threadId}/artifacts/${created.json.artifact.id}`, undefined, {
            "if-match": "*",
          })).status,
        ).toBe(200);
        const read = await readThread(threadId);
        expect(read.status).toBe(200);
        expect(read.json.thread).toMatchObject({ id: threadId, rolloutSeq: 2, artifacts: [] });
        expect(read.headers.get("etag")).toBe('"2"');
      });

      it("answers 404 thread_not_found for an unknown thread", async () => {
        expectProblem(
          await call(
            "DELETE",
            `/v1/threads/${uniqueThreadId("nowhere")}/artifacts/0190a000-0000-7000-8000-000000000002`,
          ),
          404,
          "thread_not_found",
        );
      });
    });

    describe("list-threads", () => {
      it("lists threads by updatedAt descending, each decorated like read-thread", async () => {
        const ids = [uniqueThreadId("list-a"), uniqueThreadId("list-b"), uniqueThreadId("list-c")];
        const first: HttpResult[] = [];
        for (const threadId of ids) first.push(await create(threadId, { artifactType: "t", payload: threadId }));
        // Touch the first thread last: it is now the most recently updated thread of all.
        const touched = await call("PATCH", `/v1/threads/${ids[0]}/artifacts/${first[0]?.json.artifact.id}`, {
          payload: "touched",
        });
        expect(touched.status).toBe(200);

        const all = await call("GET", "/v1/threads?limit=200");
        expect(all.status).toBe(200);
        expect(all.headers.get("content-type") ?? "").toMatch(/^application\/json\b/);
        expect(Object.keys(all.json).sort()).toEqual(["nextCursor", "threads"]);
        const threads: any[] = all.json.threads;
        for (const thread of threads) expectThreadViewShape(thread);
        for (let i = 1; i < threads.length; i++) {
          expect(threads[i - 1].updatedAt >= threads[i].updatedAt).toBe(true);
        }
        expect(threads[0].updatedAt).toBe(touched.json.artifact.updatedAt);

        const mine = ids.map((id) => threads.findIndex((t) => t.id === id));
        expect(mine.every((index) => index >= 0)).toBe(true);
        for (const [i, threadId] of ids.entries()) {
          const read = await readThread(threadId);
          expect(threads[mine[i] as number]).toEqual(read.json.thread);
        }
        expect(threads[mine[0] as number].updatedAt >= threads[mine[2] as number].updatedAt).toBe(true);
        expect(threads[mine[0] as number].artifacts[0].payload).toBe("touched");

        const top = await call("GET", "/v1/threads?limit=1");
        expect(top.json.threads).toHaveLength(1);
        expect(top.json.threads[0].updatedAt).toBe(threads[0].updatedAt);
        expect(typeof top.json.nextCursor).toBe("string");
      });

      it("pages with limit and nextCursor through every thread exactly once", async () => {
        const ids = Array.from({ length: 5 }, (_, i) => uniqueThreadId(`page-${i}`));
        for (const threadId of ids) await create(threadId, { artifactType: "t", payload: 1 });
        const everything = await call("GET", "/v1/threads?limit=200");
        expect(everything.json.nextCursor).toBeNull();
        const expected = (everything.json.threads as any[]).map((t) => t.id);

        const walked: string[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const query: string = `/v1/threads?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
          const page = await call("GET", query);
          expect(page.status).toBe(200);
          expect(page.json.threads.length).toBeLessThanOrEqual(2);
          if (page.json.nextCursor !== null) expect(page.json.threads).toHaveLength(2);
          walked.push(...page.json.threads.map((t: any) => t.id));
          cursor = page.json.nextCursor;
          pages++;
          expect(pages).toBeLessThanOrEqual(expected.length);
        } while (cursor !== null);

        expect(walked).toEqual(expected);
        expect(new Set(walked).size).toBe(walked.length);
        for (const threadId of ids) expect(walked.filter((id) => id === threadId)).toHaveLength(1);
      });

      it("answers 400 for a tampered cursor and for a limit outside 1-200", async () => {
        await create(uniqueThreadId("cursor-a"), { artifactType: "t", payload: 1 });
        await create(uniqueThreadId("cursor-b"), { artifactType: "t", payload: 1 });
        const page = await call("GET", "/v1/threads?limit=1");
        const cursor: string = page.json.nextCursor;
        expect(typeof cursor).toBe("string");
        expect((await call("GET", `/v1/threads?limit=1&cursor=${encodeURIComponent(cursor)}`)).status).toBe(200);

        // Change whole characters away from the ends: the last base64url char of a part may carry padding bits only.
        const flip = (s: string, at: number) => s.slice(0, at) + (s[at] === "A" ? "g" : "A") + s.slice(at + 1);
        const dot = cursor.indexOf(".");
        expect(dot).toBeGreaterThan(2);
        const tampered = [
          flip(cursor, 0),
          flip(cursor, dot - 2),
          flip(cursor, dot + 1),
          flip(cursor, cursor.length - 3),
          cursor.slice(0, -6),
          `${cursor}.x`,
          "garbage",
          "a.b",
        ];
        for (const bad of tampered) {
          expectProblem(await call("GET", `/v1/threads?cursor=${encodeURIComponent(bad)}`), 400, "invalid_request");
        }
        for (const limit of ["0", "201", "abc", "-1", "1.5"]) {
          expectProblem(await call("GET", `/v1/threads?limit=${limit}`), 400, "invalid_request");
        }
        for (const limit of ["1", "200"]) expect((await call("GET", `/v1/threads?limit=${limit}`)).status).toBe(200);
      });
    });

    describe("artifact-events", () => {
      /**
       * Opens the thread's stream through the target's fetch and reads it with a
       * parser written from the SSE spec until `count` artifact-updated events arrived.
       */
      async function readStream(
        threadId: string,
        count: number,
        options: { query?: string; headers?: Record<string, string> } = {},
      ) {
        return readStreamed(`/v1/threads/${threadId}/events${options.query ?? ""}`, count, options.headers);
      }

      it("sends every patch once, in seq order, as id/event/data, with retry first", async () => {
        const threadId = uniqueThreadId("events");
        const a = await create(threadId, { artifactType: "plan", payload: { step: 1 } });
        await create(threadId, { artifactType: "note", payload: "two" });
        const path = `/v1/threads/${threadId}/artifacts/${a.json.artifact.id}`;
        const updated = await call("PATCH", path, { payload: { step: 2 } });
        expect(updated.status).toBe(200);
        expect((await call("DELETE", path)).status).toBe(200);

        const { parser, events } = await readStream(threadId, 4);
        expect(parser.sequence[0]).toBe("retry");
        expect(events.map((e) => [e.id, e.seq, e.op])).toEqual([
          ["1", 1, "add"],
          ["2", 2, "add"],
          ["3", 3, "update"],
          ["4", 4, "remove"],
        ]);
        expect(events.every((e) => e.threadId === threadId)).toBe(true);
        expect(events[2]?.artifact).toEqual(updated.json.artifact);
        // A remove carries the last state before removal.
        expect(events[3]?.artifact).toEqual(updated.json.artifact);
      });

      it("resumes after Last-Event-ID, else since; the header wins", async () => {
        const threadId = uniqueThreadId("resume");
        for (let i = 1; i <= 4; i++) await create(threadId, { artifactType: "n", payload: i });
        const byHeader = await readStream(threadId, 2, { headers: { "last-event-id": "2" } });
        expect(byHeader.events.map((e) => e.seq)).toEqual([3, 4]);
        const byQuery = await readStream(threadId, 1, { query: "?since=3" });
        expect(byQuery.events.map((e) => e.seq)).toEqual([4]);
        const both = await readStream(threadId, 1, { query: "?since=1", headers: { "last-event-id": "3" } });
        expect(both.events.map((e) => e.seq)).toEqual([4]);
        // An empty Last-Event-ID (no id seen yet) is no resume point: since applies.
        const empty = await readStream(threadId, 1, { query: "?since=3", headers: { "last-event-id": "" } });
        expect(empty.events.map((e) => e.seq)).toEqual([4]);
      });

      it("delivers writes made while the stream is open, on a thread that did not exist yet", async () => {
        const threadId = uniqueThreadId("live");
        const reading = readStream(threadId, 2);
        // The stream waits for the thread; writes go in after it is open (or queue behind it): either way both arrive.
        await create(threadId, { artifactType: "n", payload: 1 });
        await create(threadId, { artifactType: "n", payload: 2 });
        const { events } = await reading;
        expect(events.map((e) => [e.seq, e.artifact.payload])).toEqual([
          [1, 1],
          [2, 2],
        ]);
      });

      it("refuses a malformed resume point with 400", async () => {
        const threadId = uniqueThreadId("badresume");
        expectProblem(await call("GET", `/v1/threads/${threadId}/events?since=abc`), 400, "invalid_request");
        expectProblem(
          await call("GET", `/v1/threads/${threadId}/events`, undefined, { "last-event-id": "-1" }),
          400,
          "invalid_request",
        );
      });
    });

    describeMergePatches(ctx);
    describeManyThreadStreams(ctx);
    describeHistory(ctx);
    describeDeletion(ctx);
    describeRateLimits(ctx);
    describeIdempotency(ctx);

    describe("service routes and errors", () => {
      it("/healthz reports the stores", async () => {
        const health = await call("GET", "/healthz");
        expect(health.status).toBe(200);
        expect(health.json).toEqual({ ok: true, cache: "up", rollout: "up" });
      });

      it("/livez and /readyz answer 200 while serving, without a token", async () => {
        const live = await target!.fetch("/livez", { headers: { authorization: "" } });
        expect(live.status).toBe(200);
        expect(await live.json()).toEqual({ live: true });
        const ready = await readJsonResult(await target!.fetch("/readyz", { headers: { authorization: "" } }));
        expect(ready.status).toBe(200);
        expect(ready.json).toEqual({ ready: true, draining: false, cache: "up", rollout: "up" });
        expect((await target!.fetch("/readyz", { method: "HEAD" })).status).toBe(200);
      });

      it("every response carries X-Request-Id: the caller's when well-formed, else a generated one", async () => {
        const threadId = uniqueThreadId("reqid");
        const kept = await call("POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "t", payload: 1 }, {
          "x-request-id": "caller-id.1:A_b-9",
        });
        expect(kept.status).toBe(201);
        expect(kept.headers.get("x-request-id")).toBe("caller-id.1:A_b-9");
        for (const bad of ["", "has space", "x".repeat(129), "semi;colon", "ünïcode", "a/b"]) {
          const replaced = await call("GET", `/v1/threads/${threadId}`, undefined, { "x-request-id": bad });
          expect(replaced.status).toBe(200);
          expect(replaced.headers.get("x-request-id"), JSON.stringify(bad)).toMatch(UUID);
        }
        const longest = "L".repeat(128);
        expect((await call("GET", `/v1/threads/${threadId}`, undefined, { "x-request-id": longest })).headers
          .get("x-request-id")).toBe(longest);
        // Fresh ones differ; problems and probes carry theirs too.
        const [a, b] = [await call("GET", "/livez"), await call("GET", "/livez")];
        expect(a.headers.get("x-request-id")).toMatch(UUID);
        expect(a.headers.get("x-request-id")).not.toBe(b.headers.get("x-request-id"));
        const missing = await call("GET", "/v1/threads/no-such-thread-reqid", undefined, {
          "x-request-id": "mine-404",
        });
        expectProblem(missing, 404, "thread_not_found");
        expect(missing.json.requestId).toBe("mine-404");
        const etag = (await call("GET", `/v1/threads/${threadId}`)).headers.get("etag");
        expect(etag).toBeTruthy();
        const notModified = await call("GET", `/v1/threads/${threadId}`, undefined, {
          "if-none-match": etag as string,
          "x-request-id": "mine-304",
        });
        expect(notModified.status).toBe(304);
        expect(notModified.headers.get("x-request-id")).toBe("mine-304");
      });

      it("an event stream's response carries X-Request-Id", async () => {
        const threadId = uniqueThreadId("reqid-sse");
        await create(threadId, { artifactType: "t", payload: 1 });
        for (const path of [`/v1/threads/${threadId}/events`, `/v1/events?threads=${threadId}`]) {
          const controller = new AbortController();
          const response = await target!.fetch(path, {
            headers: { accept: "text/event-stream", "x-request-id": "stream-id-1" },
            signal: controller.signal,
          });
          try {
            expect(response.status).toBe(200);
            expect(response.headers.get("content-type") ?? "").toMatch(/^text\/event-stream\b/);
            expect(response.headers.get("x-request-id")).toBe("stream-id-1");
          } finally {
            controller.abort();
            await response.body?.cancel().catch(() => {});
          }
        }
      });

      it("/v1/openapi.json is an OpenAPI 3.1 document naming the routes", async () => {
        const doc = await call("GET", "/v1/openapi.json");
        expect(doc.status).toBe(200);
        expect(doc.headers.get("content-type") ?? "").toMatch(/^application\/json\b/);
        expect(doc.json.openapi).toMatch(/^3\.1\.\d+$/);
        const paths = doc.json.paths;
        expect(Object.keys(paths["/v1/threads/{threadId}/artifacts"])).toContain("post");
        expect(Object.keys(paths["/v1/threads/{threadId}"])).toEqual(expect.arrayContaining(["get", "delete"]));
        expect(Object.keys(paths["/v1/threads/{threadId}/fork"])).toContain("post");
        expect(Object.keys(paths["/v1/threads/{threadId}/artifacts/{artifactId}"])).toEqual(
          expect.arrayContaining(["get", "patch", "delete"]),
        );
        expect(Object.keys(paths["/v1/threads"])).toContain("get");
        expect(Object.keys(paths["/v1/events"])).toContain("get");
        expect(Object.keys(paths["/v1/threads/{threadId}/artifacts/{artifactId}/versions"])).toContain("get");
        expect(Object.keys(paths["/v1/threads/{threadId}/artifacts/{artifactId}"].patch.requestBody.content)).toEqual([
          "application/json",
          "application/merge-patch+json",
        ]);
        expect(Object.keys(paths["/healthz"])).toContain("get");
        expect(Object.keys(paths["/livez"])).toContain("get");
        expect(Object.keys(paths["/readyz"])).toContain("get");
        expect(doc.json.components.schemas.Problem.required).toContain("requestId");
        expect(paths["/v1/threads/{threadId}"].get.responses["404"].headers["X-Request-Id"]).toBeDefined();
      });

      it("answers 404 problem+json for an unknown route", async () => {
        for (
          const path of [
            "/nope",
            "/v1",
            "/v1/things",
            "/v1/threads/a/artifacts/0190a000-0000-7000-8000-000000000000/extra",
          ]
        ) {
          const result = await call("GET", path);
          expect({ path, status: result.status }).toEqual({ path, status: 404 });
          expect(result.headers.get("content-type") ?? "").toMatch(/^application\/problem\+json\b/);
          expectProblemBody(result, 404);
        }
      });

      it("answers 405 problem+json with Allow for a method the route does not have", async () => {
        const cases: Array<[string, string, string[]]> = [
          ["PUT", "/v1/threads/t1/artifacts", ["POST"]],
          ["GET", "/v1/threads/t1/artifacts", ["POST"]],
          ["POST", "/v1/threads/t1", ["GET", "DELETE"]],
          ["PUT", "/v1/threads/t1", ["GET", "DELETE"]],
          ["PUT", "/v1/threads/t1/artifacts/0190a000-0000-7000-8000-000000000000", ["GET", "PATCH", "DELETE"]],
          ["POST", "/v1/threads", ["GET"]],
          ["POST", "/healthz", ["GET"]],
          ["DELETE", "/v1/openapi.json", ["GET"]],
        ];
        for (const [method, path, allowed] of cases) {
          const result = await call(method, path);
          expect({ method, path, status: result.status }).toEqual({ method, path, status: 405 });
          expect(result.headers.get("content-type") ?? "").toMatch(/^application\/problem\+json\b/);
          expectProblemBody(result, 405);
          const allow = (result.headers.get("allow") ?? "").split(",").map((m) => m.trim());
          expect(allow).toEqual(expect.arrayContaining(allowed));
          expect(allow).not.toContain(method);
        }
      });

      it("answers problem+json 4xx for bad bodies and writes nothing", async () => {
        const threadId = uniqueThreadId("badbody");
        await create(threadId, { artifactType: "t", payload: 1 });
        const path = `/v1/threads/${threadId}/artifacts`;
        expectProblem(await call("POST", path, "{not json"), 400, "invalid_request");
        expectProblem(await call("POST", path, { artifactType: "t", payload: 1, extra: true }), 400, "invalid_request");
        expectProblem(await call("POST", path, { artifactType: "t" }), 400, "invalid_request");
        expectProblem(await call("POST", path, { artifactType: 7, payload: 1 }), 400, "invalid_request");
        expectProblem(
          await call("POST", path, JSON.stringify({ artifactType: "t", payload: 1 }), { "content-type": "text/plain" }),
          415,
          "unsupported_media_type",
        );
        expectProblem(
          await call("POST", `/v1/threads/-bad/artifacts`, { artifactType: "t", payload: 1 }),
          400,
          "invalid_request",
        );
        expect(await headSeq(threadId)).toBe(1);
      });
    });
  });
}
