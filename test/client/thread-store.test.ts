/**
 * The client's live stores (src/client/thread-store.ts) against the real app in process,
 * through a fetch that breaks things on command (test/support/controlled-fetch.ts):
 * - getSnapshot is the same frozen object until something changes; listeners hear changes;
 * - optimistic writes: event-before-answer and answer-before-event each leave exactly one
 *   copy; rollback on 409, 412, 422, 429 and on network failure after the retries, every
 *   attempt carrying the same Idempotency-Key; a 503 with Retry-After is retried; writes
 *   go out one at a time, in order, pending ids included;
 * - the stream: deleted status and the thread's next life; a dropped stream resumes
 *   after the last seq without duplicates and without a re-read; a lost event (a gap) or
 *   a refused resume makes the store read again; a resume refused twice is an error;
 * - watchThreads follows several threads over one connection, resumes with the token,
 *   and starts over when the token is refused;
 * - the plain client's writes send `Idempotency-Key` when given one.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  ArtifactsApiError,
  type ArtifactsClient,
  createArtifactsClient,
  type ThreadSnapshot,
  type ThreadStore,
} from "../../src/client/index.ts";
import { controlledFetch } from "../support/controlled-fetch.ts";
import { type InProcessOptions, useTestApps } from "../support/in-process.ts";
import { waitFor } from "../support/wait.ts";

const BASE = "http://artifacts.test";
let counter = 0;
const newThread = (name: string) => `store-${name}-${++counter}`;
const FAST = { minBackoffMs: 5, maxBackoffMs: 40 };

describe("thread store", () => {
  const apps = useTestApps();
  const stores: { close(): void }[] = [];
  afterEach(() => {
    for (const store of stores.splice(0)) store.close();
  });

  function setup(options: InProcessOptions = {}) {
    const app = apps(options);
    const control = controlledFetch(app.app);
    const client = createArtifactsClient({ baseUrl: BASE, fetch: control.fetch });
    const other = createArtifactsClient({
      baseUrl: BASE,
      fetch: async (input, init) => await app.app.request(input as string, init),
    });
    const watch = (threadId: string, options = {}) => {
      const store = client.watchThread(threadId, { ...FAST, ...options });
      stores.push(store);
      return store;
    };
    return { app, control, client, other, watch };
  }

  /** Waits until the store's confirmed state is the server's at its head (the thread's read, or a 404). */
  async function caughtUp(store: ThreadStore, other: ArtifactsClient, threadId: string): Promise<ThreadSnapshot> {
    const server = await other.readThread(threadId);
    const snapshot = await waitFor(`the store at seq ${server.rolloutSeq}`, () => {
      const s = store.getSnapshot();
      return s.seq === server.rolloutSeq && s.status === "live" && s.pendingWrites === 0 && s;
    });
    expect(snapshot.thread?.artifacts).toEqual(server.artifacts);
    return snapshot;
  }

  const live = (store: ThreadStore) => waitFor("the store live", () => store.getSnapshot().status === "live");

  it("reads and follows; getSnapshot is the same frozen object until something changes", async () => {
    const { other, watch } = setup();
    const threadId = newThread("snapshot");
    const first = await other.createArtifact(threadId, { artifactType: "note", payload: 1 });
    const store = watch(threadId);
    expect(store.getSnapshot()).toMatchObject({ status: "connecting", thread: null, seq: 0 });
    let calls = 0;
    const unsubscribe = store.subscribe(() => calls++);
    await live(store);
    const a = store.getSnapshot();
    expect(store.getSnapshot()).toBe(a);
    expect(store.getSnapshot()).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
    expect(Object.isFrozen(a.thread)).toBe(true);
    expect(Object.isFrozen(a.thread?.artifacts)).toBe(true);
    // Unbound, as useSyncExternalStore(store.subscribe, store.getSnapshot) calls them.
    const { getSnapshot, subscribe } = store;
    expect(getSnapshot()).toBe(a);
    subscribe(() => {})();
    expect(a.thread?.artifacts).toEqual([first.artifact]);
    expect(a.seq).toBe(1);
    expect(calls).toBeGreaterThan(0);

    const before = calls;
    const second = await other.createArtifact(threadId, { artifactType: "note", payload: 2 });
    const b = await waitFor("the second artifact", () => store.getSnapshot().seq === 2 && store.getSnapshot());
    expect(b).not.toBe(a);
    expect(b.thread?.artifacts).toEqual([first.artifact, second.artifact]);
    // A row nothing touched is the same object.
    expect(b.thread?.artifacts[0]).toBe(a.thread?.artifacts[0]);
    await waitFor("a listener call", () => calls > before);
    unsubscribe();
    const after = calls;
    await other.createArtifact(threadId, { artifactType: "note", payload: 3 });
    await waitFor("the third artifact", () => store.getSnapshot().seq === 3);
    await Promise.resolve();
    expect(calls).toBe(after);
  });

  it("a thread that does not exist is empty at seq 0, live, and fills as it is written", async () => {
    const { other, watch } = setup();
    const threadId = newThread("new");
    const store = watch(threadId);
    await live(store);
    expect(store.getSnapshot()).toMatchObject({ seq: 0, thread: { id: threadId, rolloutSeq: 0, artifacts: [] } });
    const { artifact } = await other.createArtifact(threadId, { artifactType: "note", payload: "x" });
    await waitFor("the first artifact", () => store.getSnapshot().seq === 1);
    expect(store.getSnapshot().thread).toMatchObject({ createdAt: artifact.createdAt, artifacts: [artifact] });
  });

  it("event before answer: one copy, confirmed by the event, then the answer", async () => {
    const { control, other, watch } = setup();
    const threadId = newThread("event-first");
    const store = watch(threadId);
    await live(store);
    const release = control.holdAnswers();
    const created = store.createArtifact({ artifactType: "note", payload: { n: 1 } });
    expect(created.pendingId).toMatch(/^pending:/);
    // At once: the pending artifact.
    expect(store.getSnapshot().thread?.artifacts).toMatchObject([{ id: created.pendingId, pending: true }]);
    // The server wrote it and the event came; the answer is held.
    const seen = await waitFor("the event", () => store.getSnapshot().seq === 1 && store.getSnapshot());
    expect(seen.thread?.artifacts).toHaveLength(1);
    expect(seen.thread?.artifacts[0]?.pending).toBeUndefined();
    expect(seen.pendingWrites).toBe(1);
    release();
    const answer = await created;
    const done = store.getSnapshot();
    expect(done.thread?.artifacts).toEqual([answer.artifact]);
    expect(done.pendingWrites).toBe(0);

    // The same for an update: the event first, then the answer.
    const hold = control.holdAnswers();
    const updated = store.updateArtifact(created.pendingId, { n: 2 });
    expect(store.getSnapshot().thread?.artifacts).toMatchObject([{ payload: { n: 2 }, version: 1, pending: true }]);
    await waitFor("the update's event", () => store.getSnapshot().seq === 2);
    expect(store.getSnapshot().thread?.artifacts).toHaveLength(1);
    hold();
    const answer2 = await updated;
    expect(store.getSnapshot().thread?.artifacts).toEqual([answer2.artifact]);
    expect(answer2.artifact).toMatchObject({ id: answer.artifact.id, version: 2, seq: 2, payload: { n: 2 } });
    await caughtUp(store, other, threadId);
  });

  it("answer before event: one copy with the server's id, version and seq, before and after the event", async () => {
    const { control, other, watch } = setup();
    const threadId = newThread("answer-first");
    const store = watch(threadId);
    await live(store);
    control.pauseStreams();
    const created = store.createArtifact({ artifactType: "plan", identityKey: "main", payload: ["a"] });
    const merged = store.mergeArtifact(created.pendingId, { x: 1 });
    expect(store.getSnapshot().thread?.artifacts).toMatchObject([
      { id: created.pendingId, payload: { x: 1 }, pending: true },
    ]);
    const answer = await created;
    const mergeAnswer = await merged;
    const shown = store.getSnapshot();
    // The stream has not delivered yet: the confirmed seq is still 0, the answers show.
    expect(shown.seq).toBe(0);
    expect(shown.thread?.artifacts).toEqual([mergeAnswer.artifact]);
    expect(mergeAnswer.artifact).toMatchObject({ id: answer.artifact.id, version: 2, seq: 2, payload: { x: 1 } });
    expect(shown.pendingWrites).toBe(0);
    control.resumeStreams();
    const after = await caughtUp(store, other, threadId);
    expect(after.thread?.artifacts).toEqual([mergeAnswer.artifact]);
  });

  it("rolls back a 409, a 412, a 422 and a 429, exposing each error; nothing is written", async () => {
    const { control, other, watch } = setup({ env: { MAX_ARTIFACTS_PER_THREAD: "2" } });
    const threadId = newThread("rollback");
    const { artifact } = await other.createArtifact(threadId, {
      artifactType: "plan",
      identityKey: "k",
      payload: { v: 1 },
    });
    const store = watch(threadId);
    await live(store);
    const confirmed = store.getSnapshot().thread?.artifacts;

    // 409: the identity exists with another payload. The optimistic view shows it changed, once.
    const conflict = store.createArtifact({ artifactType: "plan", identityKey: "k", payload: { v: 2 } });
    expect(store.getSnapshot().thread?.artifacts).toMatchObject([{
      id: artifact.id,
      payload: { v: 2 },
      pending: true,
    }]);
    await expectRejection(conflict, 409, "identity_conflict");
    expect(store.getSnapshot().thread?.artifacts).toEqual(confirmed);
    expect(store.getSnapshot().writeError).toMatchObject({ op: "create", artifactId: conflict.pendingId });

    // 412: a stale If-Match.
    const stale = store.updateArtifact(artifact.id, { v: 3 }, { ifVersion: 7 });
    expect(store.getSnapshot().thread?.artifacts).toMatchObject([{ payload: { v: 3 }, pending: true }]);
    await expectRejection(stale, 412, "version_conflict");
    expect(store.getSnapshot().thread?.artifacts).toEqual(confirmed);
    expect((store.getSnapshot().writeError?.error as ArtifactsApiError).status).toBe(412);

    // 422: the thread is full (MAX_ARTIFACTS_PER_THREAD=2).
    const kept = await store.createArtifact({ artifactType: "note", payload: 2 });
    expect(store.getSnapshot().writeError).toBeUndefined();
    const full = store.createArtifact({ artifactType: "note", payload: 3 });
    expect(store.getSnapshot().thread?.artifacts.map((a) => a.id)).toEqual([
      artifact.id,
      kept.artifact.id,
      full.pendingId,
    ]);
    await expectRejection(full, 422, "thread_full");
    expect(store.getSnapshot().thread?.artifacts.map((a) => a.id)).toEqual([artifact.id, kept.artifact.id]);

    // 429: refused for now; not retried by the store (the caller decides), rolled back.
    control.failWrites({ kind: "respond", status: 429, code: "rate_limited", headers: { "retry-after": "1" } });
    const sent = control.requestsTo("/artifacts", "DELETE").length;
    const limited = store.removeArtifact(kept.artifact.id);
    expect(store.getSnapshot().thread?.artifacts.map((a) => a.id)).toEqual([artifact.id]);
    const error = await expectRejection(limited, 429, "rate_limited");
    expect(error.retryAfterMs).toBe(1000);
    expect(control.requestsTo("/artifacts", "DELETE").length).toBe(sent + 1);
    expect(store.getSnapshot().thread?.artifacts.map((a) => a.id)).toEqual([artifact.id, kept.artifact.id]);
    expect(store.getSnapshot().writeError).toMatchObject({ op: "remove", artifactId: kept.artifact.id });

    const final = await caughtUp(store, other, threadId);
    expect(final.thread?.artifacts.map((a) => a.payload)).toEqual([{ v: 1 }, 2]);
  });

  it("retries a network failure with the same Idempotency-Key, then rolls back; a 503 with Retry-After is retried", async () => {
    const { control, other, watch } = setup();
    const threadId = newThread("retry");
    const store = watch(threadId, { writeRetries: 2 });
    await live(store);

    control.failWrites({ kind: "before" }, { kind: "before" }, { kind: "before" });
    const lost = store.createArtifact({ artifactType: "note", payload: "never" });
    const error = await lost.then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    const attempts = control.requestsTo("/artifacts", "POST");
    expect(attempts).toHaveLength(3);
    const key = attempts[0]?.headers.get("idempotency-key");
    expect(key).toMatch(/^[0-9a-f-]{36}$/);
    for (const attempt of attempts) expect(attempt.headers.get("idempotency-key")).toBe(key);
    expect(store.getSnapshot().thread?.artifacts).toEqual([]);
    expect(store.getSnapshot().writeError).toMatchObject({ op: "create", artifactId: lost.pendingId, error });
    // A write to the pending id of a create that failed fails too, without a request.
    await expectRejection(store.updateArtifact(lost.pendingId, "x"), 404, "artifact_not_found");
    expect(control.requestsTo("/artifacts/", "PATCH")).toHaveLength(0);

    control.failWrites({ kind: "respond", status: 503, code: "unavailable", headers: { "retry-after": "0" } });
    const created = await store.createArtifact({ artifactType: "note", payload: "second try" });
    const posts = control.requestsTo("/artifacts", "POST").slice(3);
    expect(posts).toHaveLength(2);
    expect(posts[1]?.headers.get("idempotency-key")).toBe(posts[0]?.headers.get("idempotency-key"));
    expect(posts[0]?.headers.get("idempotency-key")).not.toBe(key);
    expect(store.getSnapshot().writeError).toBeUndefined();
    const final = await caughtUp(store, other, threadId);
    expect(final.thread?.artifacts).toEqual([created.artifact]);
  });

  it("an answer lost after the write landed: the retry with the same key gets the first answer, one artifact", async () => {
    const { control, other, watch } = setup();
    const threadId = newThread("lost-answer");
    const store = watch(threadId, { writeRetries: 2 });
    await live(store);
    control.failWrites({ kind: "after" });
    const created = await store.createArtifact({ artifactType: "note", payload: "once" });
    const posts = control.requestsTo("/artifacts", "POST");
    expect(posts).toHaveLength(2);
    expect(posts[1]?.headers.get("idempotency-key")).toBe(posts[0]?.headers.get("idempotency-key"));
    const final = await caughtUp(store, other, threadId);
    expect(final.thread?.artifacts).toEqual([created.artifact]);
    expect(final.seq).toBe(1);
  });

  it("writes go out one at a time, in the order asked for, pending ids resolved", async () => {
    const { control, other, watch } = setup();
    const threadId = newThread("order");
    const { artifact: theirs } = await other.createArtifact(threadId, { artifactType: "note", payload: "theirs" });
    const store = watch(threadId);
    await live(store);
    const release = control.holdAnswers();
    const a = store.createArtifact({ artifactType: "plan", payload: { steps: 1 } });
    const b = store.updateArtifact(a.pendingId, { steps: 2 });
    const c = store.mergeArtifact(a.pendingId, { done: false });
    const d = store.removeArtifact(theirs.id);
    const e = store.createArtifact({ artifactType: "note", payload: "last" });
    expect(store.getSnapshot().pendingWrites).toBe(5);
    expect(store.getSnapshot().thread?.artifacts).toMatchObject([
      { id: a.pendingId, payload: { steps: 2, done: false }, pending: true },
      { id: e.pendingId, payload: "last", pending: true },
    ]);
    // Held answers: only the first write went out.
    await waitFor("the first write at the server", () => control.requestsTo("/artifacts", "POST").length === 1);
    await waitFor("its event", () => store.getSnapshot().seq === 2);
    expect(control.requests.filter((r) => r.method !== "GET")).toHaveLength(1);
    release();
    const answers = await Promise.all([a, b, c, d, e]);
    const writes = control.requests.filter((r) => r.method !== "GET");
    const id = answers[0].artifact.id;
    expect(writes.map((r) => `${r.method} ${new URL(r.url).pathname}`)).toEqual([
      `POST /v1/threads/${threadId}/artifacts`,
      `PATCH /v1/threads/${threadId}/artifacts/${id}`,
      `PATCH /v1/threads/${threadId}/artifacts/${id}`,
      `DELETE /v1/threads/${threadId}/artifacts/${theirs.id}`,
      `POST /v1/threads/${threadId}/artifacts`,
    ]);
    expect(new Set(writes.map((r) => r.headers.get("idempotency-key"))).size).toBe(5);
    const final = await caughtUp(store, other, threadId);
    expect(final.thread?.artifacts.map((x) => x.payload)).toEqual([{ steps: 2, done: false }, "last"]);
    expect(final.seq).toBe(6);
  });

  it("a delete makes it deleted (empty, at the delete's seq); the next life makes it live again", async () => {
    const { other, watch } = setup();
    const threadId = newThread("delete");
    await other.createArtifact(threadId, { artifactType: "note", payload: 1 });
    await other.createArtifact(threadId, { artifactType: "note", payload: 2 });
    const store = watch(threadId);
    await live(store);
    const deleted = await other.deleteThread(threadId);
    expect(deleted).toEqual({ threadId, seq: 3 });
    const gone = await waitFor("deleted", () => store.getSnapshot().status === "deleted" && store.getSnapshot());
    expect(gone).toMatchObject({ seq: 3, thread: { rolloutSeq: 3, artifacts: [] } });
    const { artifact } = await other.createArtifact(threadId, { artifactType: "note", payload: "next life" });
    expect(artifact.seq).toBe(4);
    const next = await caughtUp(store, other, threadId);
    expect(next.thread).toMatchObject({ createdAt: artifact.createdAt, artifacts: [artifact] });

    // A store opened on a thread whose life ended: deleted, at the tombstone.
    await other.deleteThread(threadId);
    const late = watch(threadId);
    await waitFor("the late store deleted", () => late.getSnapshot().status === "deleted");
    expect(late.getSnapshot()).toMatchObject({ seq: 5, thread: { artifacts: [] } });
  });

  it("a dropped stream: reconnecting, then resumed after the last seq, without duplicates or a re-read", async () => {
    const { control, other, watch } = setup();
    const threadId = newThread("drop");
    await other.createArtifact(threadId, { artifactType: "note", payload: 1 });
    const store = watch(threadId, { minBackoffMs: 100, maxBackoffMs: 200 });
    await live(store);
    await waitFor("the stream open", () => control.openStreams === 1);
    expect(control.dropStreams()).toBe(1);
    const down = await waitFor(
      "reconnecting",
      () => store.getSnapshot().status === "reconnecting" && store.getSnapshot(),
    );
    expect(down.error).toBeInstanceOf(TypeError);
    expect(down.thread?.artifacts).toHaveLength(1);
    await other.createArtifact(threadId, { artifactType: "note", payload: 2 });
    await other.createArtifact(threadId, { artifactType: "note", payload: 3 });
    const back = await caughtUp(store, other, threadId);
    expect(back.error).toBeUndefined();
    expect(back.thread?.artifacts.map((a) => a.payload)).toEqual([1, 2, 3]);
    const streams = control.requestsTo(`/v1/threads/${threadId}/events`);
    expect(streams.map((r) => r.headers.get("last-event-id"))).toEqual(["1", "1"]);
    expect(control.requestsTo(`/v1/threads/${threadId}`, "GET").length - streams.length).toBe(1);
  });

  it("a lost event (a gap in seq) makes the store read the thread again and go on from there", async () => {
    const { control, other, watch } = setup();
    const threadId = newThread("gap");
    const store = watch(threadId);
    await live(store);
    control.loseNextChunk((text) => text.includes(`"seq":2,`));
    for (const n of [1, 2, 3]) await other.createArtifact(threadId, { artifactType: "note", payload: n });
    const final = await caughtUp(store, other, threadId);
    expect(final.thread?.artifacts.map((a) => a.payload)).toEqual([1, 2, 3]);
    const reads = control.requestsTo(`/v1/threads/${threadId}`, "GET").filter((r) => !r.url.endsWith("/events"));
    expect(reads).toHaveLength(2);
  });

  it("a resume the server refuses: read again and go on; refused again at once: error", async () => {
    const { control, other, watch } = setup();
    const threadId = newThread("refused");
    await other.createArtifact(threadId, { artifactType: "note", payload: 1 });
    const store = watch(threadId);
    await live(store);
    control.failStreams({ kind: "respond", status: 400, code: "invalid_request" });
    control.dropStreams();
    await other.createArtifact(threadId, { artifactType: "note", payload: 2 });
    await caughtUp(store, other, threadId);
    const reads = control.requestsTo(`/v1/threads/${threadId}`, "GET").filter((r) => !r.url.endsWith("/events"));
    expect(reads).toHaveLength(2);

    control.failStreams(
      { kind: "respond", status: 400, code: "invalid_request" },
      { kind: "respond", status: 400, code: "invalid_request" },
    );
    control.dropStreams();
    const failed = await waitFor("error", () => store.getSnapshot().status === "error" && store.getSnapshot());
    expect((failed.error as ArtifactsApiError).status).toBe(400);
    expect(failed.thread?.artifacts).toHaveLength(2);
  });

  it("close: the stream ends, writes not yet sent are rejected, listeners are not called again", async () => {
    const { control, watch } = setup();
    const threadId = newThread("close");
    const store = watch(threadId);
    await live(store);
    await waitFor("the stream open", () => control.openStreams === 1);
    let calls = 0;
    store.subscribe(() => calls++);
    const release = control.holdAnswers();
    const first = store.createArtifact({ artifactType: "note", payload: 1 });
    const second = store.createArtifact({ artifactType: "note", payload: 2 });
    await waitFor("the first write sent", () => control.requestsTo("/artifacts", "POST").length === 1);
    await Promise.resolve();
    const before = calls;
    store.close();
    await expect(second).rejects.toMatchObject({ name: "AbortError" });
    release();
    await first;
    await waitFor("the stream closed", () => control.openStreams === 0);
    expect(calls).toBe(before);
    expect(control.requestsTo("/artifacts", "POST")).toHaveLength(1);
  });

  it("watchThreads: several threads over one connection, resumed by token, restarted when the token is refused", async () => {
    const { control, other, client } = setup();
    const [a, b, c] = [newThread("many-a"), newThread("many-b"), newThread("many-c")];
    await other.createArtifact(a, { artifactType: "note", payload: "a1" });
    await other.createArtifact(c, { artifactType: "note", payload: "c1" });
    const store = client.watchThreads([a, b, c, a], FAST);
    stores.push(store);
    await waitFor("live", () => store.getSnapshot().status === "live");
    const first = store.getSnapshot();
    expect(Object.keys(first.threads)).toEqual([a, b, c]);
    expect(first.threads[b]).toMatchObject({ status: "live", seq: 0, thread: { artifacts: [] } });
    expect(store.getSnapshot()).toBe(first);

    await other.createArtifact(b, { artifactType: "note", payload: "b1" });
    await other.deleteThread(c);
    const second = await waitFor("b's artifact and c's delete", () => {
      const s = store.getSnapshot();
      return s.threads[b]?.seq === 1 && s.threads[c]?.status === "deleted" && s;
    });
    // A thread that did not change keeps its snapshot object.
    expect(second.threads[a]).toBe(first.threads[a]);
    expect(second.threads[c]).toMatchObject({ seq: 2, thread: { artifacts: [] } });

    // A dropped connection resumes with the server's token.
    control.dropStreams();
    await other.createArtifact(a, { artifactType: "note", payload: "a2" });
    await waitFor("a's second artifact", () => store.getSnapshot().threads[a]?.seq === 2);
    const streams = control.requestsTo("/v1/events?");
    expect(streams.length).toBeGreaterThanOrEqual(2);
    expect(streams[0]?.headers.get("last-event-id")).toBeNull();
    expect(streams.at(-1)?.headers.get("last-event-id")).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);

    // A token the server refuses: the threads are read again and followed from their seqs, without a token.
    control.onNextStreamRequest((headers) => headers.set("last-event-id", "tampered.token"));
    control.dropStreams();
    await other.createArtifact(b, { artifactType: "note", payload: "b2" });
    await other.createArtifact(c, { artifactType: "note", payload: "c-next" });
    const last = await waitFor("b2 and c's next life", () => {
      const s = store.getSnapshot();
      return s.threads[b]?.seq === 2 && s.threads[c]?.seq === 3 && s.status === "live" && s;
    });
    const [tampered, restart] = control.requestsTo("/v1/events?").slice(-2);
    expect(tampered?.headers.get("last-event-id")).toBe("tampered.token");
    expect(restart?.headers.get("last-event-id")).toBeNull();
    // Each thread from its fresh read's seq (the writes above may or may not have been read yet).
    expect(decodeURIComponent(new URL(restart?.url as string).search)).toMatch(
      new RegExp(`^\\?threads=${a}:2,${b}:[12],${c}:[23]$`),
    );
    for (const id of [a, b, c]) {
      expect(last.threads[id]?.thread?.artifacts).toEqual((await other.readThread(id)).artifacts);
    }
    expect(last.threads[c]?.status).toBe("live");
  });

  it("the plain client sends Idempotency-Key on writes when asked, and has deleteThread and forkThread", async () => {
    const { control, client } = setup();
    const threadId = newThread("plain");
    const { artifact } = await client.createArtifact(threadId, { artifactType: "note", payload: 1 }, {
      idempotencyKey: "k-create",
    });
    await client.updateArtifact(threadId, artifact.id, 2, { idempotencyKey: "k-update", ifVersion: 1 });
    await client.mergeArtifact(threadId, artifact.id, { a: 1 }, { idempotencyKey: "k-merge" });
    const fork = await client.forkThread(threadId, { threadId: `${threadId}-fork` }, { idempotencyKey: "k-fork" });
    expect(fork).toMatchObject({ id: `${threadId}-fork`, forkedFrom: { threadId, seq: 3 } });
    await client.removeArtifact(threadId, artifact.id, { idempotencyKey: "k-remove" });
    expect(await client.deleteThread(threadId, { ifSeq: 4, idempotencyKey: "k-delete" })).toEqual({ threadId, seq: 5 });
    await client.readThread(threadId).catch(() => {});
    const writes = control.requests.filter((r) => r.method !== "GET");
    expect(writes.map((r) => r.headers.get("idempotency-key"))).toEqual([
      "k-create",
      "k-update",
      "k-merge",
      "k-fork",
      "k-remove",
      "k-delete",
    ]);
    expect(writes[1]?.headers.get("if-match")).toBe('"1"');
    expect(writes[5]?.headers.get("if-match")).toBe('"4"');
    expect(control.requests.filter((r) => r.method === "GET").every((r) => !r.headers.has("idempotency-key"))).toBe(
      true,
    );
  });
});

async function expectRejection(promise: Promise<unknown>, status: number, code: string): Promise<ArtifactsApiError> {
  const error = await promise.then(
    () => {
      throw new Error(`expected ${status} ${code}, got a success`);
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ArtifactsApiError);
  expect([(error as ArtifactsApiError).status, (error as ArtifactsApiError).code]).toEqual([status, code]);
  return error as ArtifactsApiError;
}
