/**
 * The typed client (src/client) against a real Node server process:
 * - every call maps to the API and returns its typed body; errors surface as
 *   ArtifactsApiError with the problem's status and code;
 * - `subscribe` sends the Authorization header, resumes from `since`, stops on abort,
 *   rejects on a 4xx, and when the server goes away (killed, then restarted on the
 *   same port and DATA_DIR) it backs off, reconnects with Last-Event-ID and delivers
 *   every event once, in order;
 * - SseParser on chunk boundaries, against the spec parser of test/support/sse.ts.
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
// Through the package's own `./client` entry, as users import it.
import {
  type ArtifactEvent,
  ArtifactsApiError,
  createArtifactsClient,
  type ThreadDeletedEvent,
} from "thread-artifacts/client";
import { type SseMessage, SseParser } from "../../src/client/sse-parser.ts";
import { useCluster } from "../support/cluster.ts";
import { freePort, newThreadId } from "../support/live-server.ts";
import type { ServerProcess } from "../support/server-process.ts";
import { SpecSseParser } from "../support/sse.ts";
import { waitFor } from "../support/wait.ts";

/** A fetch that records each request's method, URL and headers before passing it on. */
function recordingFetch() {
  const requests: Array<{ method: string; url: string; headers: Headers }> = [];
  const wrapped: typeof fetch = (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    requests.push({ method: init?.method ?? "GET", url, headers: new Headers(init?.headers) });
    return fetch(input, init);
  };
  return { fetch: wrapped, requests };
}

async function expectApiError(promise: Promise<unknown>, status: number, code: string): Promise<ArtifactsApiError> {
  const error = await promise.then(
    () => {
      throw new Error(`expected ${status} ${code}, got a success`);
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ArtifactsApiError);
  const apiError = error as ArtifactsApiError;
  expect([apiError.status, apiError.code]).toEqual([status, code]);
  expect(apiError.detail.length).toBeGreaterThan(0);
  return apiError;
}

describe("requests", () => {
  const cluster = useCluster("all");
  let server: ServerProcess;
  beforeAll(async () => {
    server = await cluster.start({ DATA_DIR: cluster.tempDir("artifacts-client-") });
  });

  it("createArtifact, getArtifact, readThread, updateArtifact, removeArtifact", async () => {
    const client = createArtifactsClient({ baseUrl: `${server.url}/` });
    const threadId = newThreadId("client");
    const created = await client.createArtifact(threadId, {
      artifactType: "plan",
      identityKey: "plan:main",
      payload: { steps: ["a"] },
    });
    expect(created.thread).toEqual({ id: threadId, rolloutSeq: 1 });
    expect(created.artifact).toMatchObject({
      threadId,
      artifactType: "plan",
      identityKey: "plan:main",
      payload: { steps: ["a"] },
      version: 1,
      seq: 1,
    });

    // Idempotent retry: same artifact, nothing appended.
    const again = await client.createArtifact(threadId, {
      artifactType: "plan",
      identityKey: "plan:main",
      payload: { steps: ["a"] },
    });
    expect(again.artifact).toEqual(created.artifact);
    expect(again.thread.rolloutSeq).toBe(1);

    const other = await client.createArtifact(threadId, { artifactType: "note", payload: "free text" });
    expect(other.artifact.identityKey).toBeNull();
    expect(await client.getArtifact(threadId, other.artifact.id)).toEqual(other.artifact);

    const updated = await client.updateArtifact(threadId, created.artifact.id, { steps: ["a", "b"] }, { ifVersion: 1 });
    expect(updated.artifact).toMatchObject({
      id: created.artifact.id,
      version: 2,
      seq: 3,
      payload: { steps: ["a", "b"] },
    });

    const thread = await client.readThread(threadId);
    expect(thread.id).toBe(threadId);
    expect(thread.rolloutSeq).toBe(3);
    expect(thread.artifacts).toEqual([updated.artifact, other.artifact]);
    expect((await client.readThread(threadId, { consistency: "cache", minSeq: 3 })).artifacts).toEqual(
      thread.artifacts,
    );

    const removed = await client.removeArtifact(threadId, other.artifact.id, { ifVersion: 1 });
    expect(removed.removed).toEqual({ id: other.artifact.id, seq: 4 });
    expect(removed.thread.rolloutSeq).toBe(4);
    expect((await client.readThread(threadId)).artifacts).toEqual([updated.artifact]);
  });

  it("listThreads pages through every thread with limit and cursor", async () => {
    const client = createArtifactsClient({ baseUrl: server.url });
    const mine = [newThreadId("list"), newThreadId("list"), newThreadId("list")];
    for (const threadId of mine) await client.createArtifact(threadId, { artifactType: "note", payload: threadId });
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 100; page++) {
      const result = await client.listThreads({ limit: 2, ...(cursor ? { cursor } : {}) });
      expect(result.threads.length).toBeLessThanOrEqual(2);
      seen.push(...result.threads.map((t) => t.id));
      for (const t of result.threads) expect(t.artifacts.length).toBeGreaterThan(0);
      if (result.nextCursor === null) break;
      cursor = result.nextCursor;
    }
    expect(new Set(seen).size).toBe(seen.length);
    for (const threadId of mine) expect(seen).toContain(threadId);
    // Newest first: the three created last, in reverse order of creation.
    expect(seen.slice(0, 3)).toEqual([...mine].reverse());
  });

  it("errors surface as ArtifactsApiError with status and code", async () => {
    const client = createArtifactsClient({ baseUrl: server.url });
    const threadId = newThreadId("client-errors");
    await expectApiError(client.readThread(threadId), 404, "thread_not_found");
    const { artifact } = await client.createArtifact(threadId, { artifactType: "plan", identityKey: "k", payload: 1 });
    await expectApiError(
      client.createArtifact(threadId, { artifactType: "plan", identityKey: "k", payload: 2 }),
      409,
      "identity_conflict",
    );
    await expectApiError(client.updateArtifact(threadId, artifact.id, 3, { ifVersion: 7 }), 412, "version_conflict");
    await expectApiError(
      client.removeArtifact(threadId, "0193f0c2-7d4a-7c1e-9b1a-3f9d2c1e8a77"),
      404,
      "artifact_not_found",
    );
    await expectApiError(
      client.getArtifact(threadId, "0193f0c2-7d4a-7c1e-9b1a-3f9d2c1e8a77"),
      404,
      "artifact_not_found",
    );
    await expectApiError(
      client.createArtifact("not a valid id!", { artifactType: "plan", payload: 1 }),
      400,
      "invalid_request",
    );
    await expectApiError(client.createArtifact(threadId, { artifactType: "", payload: 1 }), 400, "invalid_request");
    await expectApiError(client.readThread(threadId, { minSeq: 99 }), 404, "thread_not_found");
    await expectApiError(client.listThreads({ limit: 0 }), 400, "invalid_request");
    await expectApiError(client.listThreads({ cursor: "forged" }), 400, "invalid_request");
    // Nothing the refused calls sent was written.
    expect((await client.readThread(threadId)).artifacts).toEqual([artifact]);
  });

  it("sends the bearer token on every call, the event stream included", async () => {
    const recorder = recordingFetch();
    const client = createArtifactsClient({ baseUrl: server.url, token: "t0ken-123", fetch: recorder.fetch });
    const threadId = newThreadId("client-auth");
    const { artifact } = await client.createArtifact(threadId, { artifactType: "note", payload: 1 });
    await client.readThread(threadId);
    await client.listThreads({ limit: 1 });
    const stop = new AbortController();
    const events: ArtifactEvent[] = [];
    const done = client.subscribe(threadId, { onEvent: (e) => events.push(e), signal: stop.signal });
    await waitFor("the first event", () => events.length === 1);
    stop.abort();
    await done;
    expect(events[0]?.artifact).toEqual(artifact);
    const streamRequests = recorder.requests.filter((r) => r.url.endsWith(`/v1/threads/${threadId}/events`));
    expect(streamRequests).toHaveLength(1);
    expect(streamRequests[0]?.headers.get("accept")).toBe("text/event-stream");
    expect(recorder.requests.length).toBe(4);
    for (const r of recorder.requests) expect(r.headers.get("authorization")).toBe("Bearer t0ken-123");
  });

  it("subscribe resumes after `since`, resolves on abort, and rejects on a 4xx", async () => {
    const client = createArtifactsClient({ baseUrl: server.url });
    const threadId = newThreadId("client-since");
    for (const n of [1, 2, 3]) await client.createArtifact(threadId, { artifactType: "note", payload: n });
    const stop = new AbortController();
    const events: ArtifactEvent[] = [];
    const done = client.subscribe(threadId, { since: 2, onEvent: (e) => events.push(e), signal: stop.signal });
    await client.createArtifact(threadId, { artifactType: "note", payload: 4 });
    await waitFor("events 3 and 4", () => events.length >= 2);
    stop.abort();
    await expect(done).resolves.toBeUndefined();
    expect(events.map((e) => e.seq)).toEqual([3, 4]);

    await expectApiError(client.subscribe("bad thread!", { onEvent: () => {} }), 400, "invalid_request");
    await expectApiError(client.subscribe(threadId, { since: -1, onEvent: () => {} }), 400, "invalid_request");
  });
});

describe("merge patches and many threads", () => {
  const cluster = useCluster("all");
  let server: ServerProcess;
  beforeAll(async () => {
    server = await cluster.start({ DATA_DIR: cluster.tempDir("artifacts-client-") });
  });

  it("mergeArtifact sends an RFC 7396 merge patch, with If-Match from ifVersion", async () => {
    const recorder = recordingFetch();
    const client = createArtifactsClient({ baseUrl: server.url, fetch: recorder.fetch });
    const threadId = newThreadId("client-merge");
    const { artifact } = await client.createArtifact(threadId, {
      artifactType: "plan",
      payload: { steps: { "1": "todo", "2": "todo" }, draft: "x" },
    });
    const merged = await client.mergeArtifact(threadId, artifact.id, { steps: { "1": "done" }, draft: null });
    expect(merged.artifact).toMatchObject({ version: 2, payload: { steps: { "1": "done", "2": "todo" } } });
    const request = recorder.requests.at(-1);
    expect(request?.method).toBe("PATCH");
    expect(request?.headers.get("content-type")).toBe("application/merge-patch+json");
    await expectApiError(
      client.mergeArtifact(threadId, artifact.id, { a: 1 }, { ifVersion: 1 }),
      412,
      "version_conflict",
    );
    const again = await client.mergeArtifact(threadId, artifact.id, { a: 1 }, { ifVersion: 2 });
    expect(again.artifact.payload).toEqual({ steps: { "1": "done", "2": "todo" }, a: 1 });
  });

  it("subscribeMany follows several threads on one connection, each from its since, and rejects a bad list", async () => {
    const recorder = recordingFetch();
    const client = createArtifactsClient({ baseUrl: server.url, fetch: recorder.fetch });
    const [a, b] = [newThreadId("client-many-a"), `${newThreadId("client-many-b")}:7`];
    for (const n of [1, 2]) await client.createArtifact(a, { artifactType: "note", payload: `a${n}` });
    const stop = new AbortController();
    const events: ArtifactEvent[] = [];
    const done = client.subscribeMany([{ threadId: a, since: 1 }, b], {
      onEvent: (e) => events.push(e),
      signal: stop.signal,
    });
    await client.createArtifact(b, { artifactType: "note", payload: "b1" });
    await waitFor("a's second event and b's first", () => events.length >= 2);
    stop.abort();
    await done;
    expect(events.map((e) => `${e.threadId}@${e.seq}`).sort()).toEqual([`${a}@2`, `${b}@1`].sort());
    const streams = recorder.requests.filter((r) => r.url.includes("/v1/events?"));
    expect(streams).toHaveLength(1);
    // An id that ends in ":digits" is sent with an explicit start, so it is not read as id:seq.
    expect(decodeURIComponent(new URL(streams[0]?.url as string).search)).toBe(`?threads=${a}:1,${b}:0`);
    await expectApiError(client.subscribeMany(["bad id!"], { onEvent: () => {} }), 400, "invalid_request");
  });
});

describe("a subscription across a thread's delete", () => {
  const cluster = useCluster("all");
  let server: ServerProcess;
  beforeAll(async () => {
    server = await cluster.start({ DATA_DIR: cluster.tempDir("artifacts-client-") });
  });

  it("subscribe reports the delete, resumes after it (no replay of the tombstone), then follows the next life", async () => {
    const recorder = recordingFetch();
    const client = createArtifactsClient({ baseUrl: server.url, fetch: recorder.fetch });
    const threadId = newThreadId("client-delete");
    await client.createArtifact(threadId, { artifactType: "note", payload: 1 });
    const events: ArtifactEvent[] = [];
    const deletes: ThreadDeletedEvent[] = [];
    const stop = new AbortController();
    const done = client.subscribe(threadId, {
      onEvent: (e) => events.push(e),
      onDeleted: (e) => deletes.push(e),
      signal: stop.signal,
      minBackoffMs: 20,
    });
    await waitFor("the first event", () => events.length === 1);
    const deleted = await fetch(`${server.url}/v1/threads/${threadId}`, { method: "DELETE" });
    expect(await deleted.json()).toEqual({ deleted: { threadId, seq: 2 } });
    await waitFor("the delete", () => deletes.length === 1);
    await client.createArtifact(threadId, { artifactType: "note", payload: "next life" });
    await waitFor("the next life's first event", () => events.length === 2);
    stop.abort();
    await done;
    expect(deletes).toEqual([{ threadId, seq: 2 }]);
    expect(events.map((e) => [e.seq, e.artifact.payload])).toEqual([[1, 1], [3, "next life"]]);
    // The reconnect after the stream ended resumed after the tombstone.
    const resumes = recorder.requests.filter((r) => r.url.endsWith("/events")).map((r) =>
      r.headers.get("last-event-id")
    );
    expect(resumes.slice(0, 2)).toEqual(["0", "2"]);
  });
});

describe("subscribeMany across a server restart", () => {
  const cluster = useCluster();

  it("reconnects with the last resume token: every thread's events once, in order", async () => {
    const env = { DATA_DIR: cluster.tempDir("artifacts-client-"), PORT: String(await freePort()) };
    const first = await cluster.start(env);
    const recorder = recordingFetch();
    const client = createArtifactsClient({ baseUrl: first.url, fetch: recorder.fetch });
    const threads = [newThreadId("many-restart-a"), newThreadId("many-restart-b")];
    const events: ArtifactEvent[] = [];
    const stop = new AbortController();
    const done = client.subscribeMany(threads, {
      onEvent: (e) => events.push(e),
      signal: stop.signal,
      minBackoffMs: 50,
      maxBackoffMs: 500,
    });
    try {
      for (const t of threads) await client.createArtifact(t, { artifactType: "note", payload: 1 });
      await waitFor("one event per thread from the first server", () => events.length === 2);
      await first.stop();
      await cluster.start(env);
      for (const t of threads) await client.createArtifact(t, { artifactType: "note", payload: 2 });
      await waitFor("the second event of each thread", () => events.length >= 4);
    } finally {
      stop.abort();
      await done;
    }
    for (const t of threads) expect(events.filter((e) => e.threadId === t).map((e) => e.seq)).toEqual([1, 2]);
    const resumes = recorder.requests.filter((r) => r.url.includes("/v1/events?")).map((r) =>
      r.headers.get("last-event-id")
    );
    expect(resumes[0]).toBeNull();
    // Every reconnect carried a resume token (not a seq).
    expect(resumes.slice(1).length).toBeGreaterThanOrEqual(1);
    for (const token of resumes.slice(1)) expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  });
});

describe("against a server that requires a token", () => {
  const cluster = useCluster("all");
  let server: ServerProcess;
  beforeAll(async () => {
    server = await cluster.start({ DATA_DIR: cluster.tempDir("artifacts-client-"), AUTH_TOKENS: "secret-a:tenant-a" });
  });

  it("subscribe is authorised by the Authorization header it sends; without a token it rejects with 401", async () => {
    const threadId = newThreadId("client-authz");
    const client = createArtifactsClient({ baseUrl: server.url, token: "secret-a" });
    const stop = new AbortController();
    const events: ArtifactEvent[] = [];
    const done = client.subscribe(threadId, { onEvent: (e) => events.push(e), signal: stop.signal });
    const { artifact } = await client.createArtifact(threadId, { artifactType: "note", payload: "for tenant a" });
    await waitFor("the event, through the authorised stream", () => events.length === 1);
    stop.abort();
    await done;
    expect(events[0]?.artifact).toEqual(artifact);

    const anonymous = createArtifactsClient({ baseUrl: server.url });
    await expectApiError(anonymous.subscribe(threadId, { onEvent: () => {} }), 401, "unauthorized");
    await expectApiError(anonymous.readThread(threadId), 401, "unauthorized");
    const wrong = createArtifactsClient({ baseUrl: server.url, token: "secret-b" });
    await expectApiError(wrong.subscribe(threadId, { onEvent: () => {} }), 401, "unauthorized");
  });
});

describe("subscribe across a server restart", () => {
  const cluster = useCluster();

  it("backs off while the server is gone, then resumes from the last id: every event once, in order", async () => {
    const port = await freePort();
    const env = { DATA_DIR: cluster.tempDir("artifacts-client-"), PORT: String(port) };
    const first = await cluster.start(env);
    const recorder = recordingFetch();
    const client = createArtifactsClient({ baseUrl: first.url, token: "tok", fetch: recorder.fetch });
    const threadId = newThreadId("client-restart");
    const events: ArtifactEvent[] = [];
    const errors: unknown[] = [];
    const stop = new AbortController();
    const done = client.subscribe(threadId, {
      onEvent: (e) => events.push(e),
      onError: (e) => errors.push(e),
      signal: stop.signal,
      minBackoffMs: 50,
      maxBackoffMs: 1000,
    });
    const streamRequests = () => recorder.requests.filter((r) => r.url.endsWith("/events"));
    try {
      for (const n of [1, 2, 3]) await client.createArtifact(threadId, { artifactType: "note", payload: n });
      await waitFor("three events from the first server", () => events.length === 3);

      await first.kill();
      const refused = (e: unknown) => (e as { cause?: { code?: string } })?.cause?.code === "ECONNREFUSED";
      await waitFor("a reconnect refused while the server is down", () => errors.some(refused));
      expect(streamRequests().length).toBeGreaterThanOrEqual(2);

      const second = await cluster.start(env);
      expect(second.url).toBe(first.url);
      for (const n of [4, 5, 6]) await client.createArtifact(threadId, { artifactType: "note", payload: n });
      await waitFor("three more events from the second server", () => events.length >= 6);
    } finally {
      stop.abort();
      await done;
    }
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(events.map((e) => e.artifact.payload)).toEqual([1, 2, 3, 4, 5, 6]);
    const lastEventIds = streamRequests().map((r) => r.headers.get("last-event-id"));
    expect(lastEventIds[0]).toBe("0");
    // Every reconnect resumed after seq 3, the last event the first server delivered.
    expect(lastEventIds.slice(1).length).toBeGreaterThanOrEqual(2);
    expect(new Set(lastEventIds.slice(1))).toEqual(new Set(["3"]));
    for (const r of streamRequests()) expect(r.headers.get("authorization")).toBe("Bearer tok");
    // Each failed attempt was reported (the last request is the one that was aborted).
    expect(errors.length).toBeGreaterThanOrEqual(streamRequests().length - 2);
  });
});

describe("SseParser", () => {
  function parseChunks(chunks: string[]) {
    const messages: SseMessage[] = [];
    const retries: number[] = [];
    const parser = new SseParser((m) => messages.push(m), (ms) => retries.push(ms));
    for (const chunk of chunks) parser.push(chunk);
    return { messages, retries };
  }

  it("a CRLF split across chunks ends one line, not two", () => {
    const { messages } = parseChunks(["data: a\r", "\ndata: b\r", "\n\r", "\n"]);
    expect(messages).toEqual([{ id: undefined, event: "message", data: "a\nb" }]);
  });

  it("an empty chunk between the CR and the LF of a CRLF changes nothing", () => {
    const { messages } = parseChunks(["data: a\r", "", "\ndata: b\r\n", "", "\r\n"]);
    expect(messages).toEqual([{ id: undefined, event: "message", data: "a\nb" }]);
  });

  it("bare CR and LF line ends, mixed, dispatch the same events", () => {
    const { messages } = parseChunks(["event: e\rdata: x\r\rid: 4\ndata: y\n\n"]);
    expect(messages).toEqual([
      { id: undefined, event: "e", data: "x" },
      { id: "4", event: "message", data: "y" },
    ]);
  });

  it("joins multi-line data with LF and strips one leading space only", () => {
    const { messages } = parseChunks(["data: one\ndata:two\ndata:  three\ndata\n\n"]);
    expect(messages).toEqual([{ id: undefined, event: "message", data: "one\ntwo\n three\n" }]);
  });

  it("ignores comments and unknown fields; a comment alone dispatches nothing", () => {
    const { messages } = parseChunks([": ping\n\n", ":\n\n", "foo: bar\n: hi\ndata: x\n\n"]);
    expect(messages).toEqual([{ id: undefined, event: "message", data: "x" }]);
  });

  it("an id without data dispatches nothing but sets the id of later events; the event type does not carry over", () => {
    const { messages } = parseChunks([
      "id: 7\n\n",
      "event: custom\n\n",
      "data: a\n\n",
      "id: 8\nevent: artifact-updated\ndata: b\n\n",
      "data: c\n\n",
    ]);
    expect(messages).toEqual([
      { id: "7", event: "message", data: "a" },
      { id: "8", event: "artifact-updated", data: "b" },
      { id: "8", event: "message", data: "c" },
    ]);
  });

  it("an id containing NUL is ignored", () => {
    const { messages } = parseChunks(["id: 1\n\n", "id: 2\u00003\ndata: x\n\n"]);
    expect(messages).toEqual([{ id: "1", event: "message", data: "x" }]);
  });

  it("reports retry only for all-digit values", () => {
    const { retries, messages } = parseChunks([
      "retry: 1500\n\n",
      "retry: 1.5\n",
      "retry: x\n",
      "retry:\n",
      "ret",
      "ry: 20",
      "\n\n",
    ]);
    expect(retries).toEqual([1500, 20]);
    expect(messages).toEqual([]);
  });

  it("does not dispatch an event whose blank line has not arrived", () => {
    const { messages } = parseChunks(["data: complete\n\n", "data: partial\n"]);
    expect(messages.map((m) => m.data)).toEqual(["complete"]);
  });

  it("property: any chunking of any stream gives the events the spec parser gives", () => {
    const value = fc.string({ unit: fc.constantFrom("a", " ", ":", "é", "\u2028", "😀", "d", "i", "0"), maxLength: 6 });
    const line = fc.oneof(
      value.map((v) => `data: ${v}`),
      value.map((v) => `data:${v}`),
      fc.constant("data"),
      value.map((v) => `id: ${v}`),
      value.map((v) => `event: ${v}`),
      fc.nat({ max: 99999 }).map((n) => `retry: ${n}`),
      value.map((v) => `: ${v}`),
      value.map((v) => `${v}: x`),
      fc.constant(""),
    );
    const stream = fc.array(fc.tuple(line, fc.constantFrom("\n", "\r", "\r\n")), { maxLength: 30 }).map((lines) =>
      lines.map(([l, end]) => l + end).join("")
    );
    fc.assert(
      fc.property(stream, fc.array(fc.nat(), { maxLength: 12 }), (text, cuts) => {
        const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
        const chunks: string[] = [];
        let from = 0;
        for (const p of [...points, text.length]) {
          chunks.push(text.slice(from, p));
          from = p;
        }
        const spec = new SpecSseParser();
        spec.push(text);
        const got = parseChunks(chunks);
        expect(got.messages.map((m) => ({ lastEventId: m.id ?? "", type: m.event, data: m.data }))).toEqual(
          spec.events,
        );
        expect(got.retries).toEqual(spec.retries);
      }),
      { numRuns: 500 },
    );
  });
});
