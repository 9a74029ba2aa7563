/**
 * The `GET /v1/threads/{threadId}/events` contract of API.md, through real loopback HTTP
 * (the in-process app served by @hono/node-server), parsed with a spec-compliant SSE
 * parser written for the tests (test/support/sse.ts), not with the service's own client:
 * wire format, `retry:` once, order without gaps, resume by Last-Event-ID and `since`,
 * waiting past the head, 400s, update/remove events, unknown threads, pings, the
 * maximum lifetime (with the typed client resuming across it), headers, and a property
 * test of random writes, disconnects and resumes against the rollout's patch files.
 */
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import { createArtifactsClient } from "../../src/client/index.ts";
import type { Artifact } from "../../src/model/artifact.ts";
import { type ArtifactEvent, type Patch, patchesOf, toEvent } from "../../src/model/patch.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { type LiveApp, newThreadId, startLiveApp } from "../support/live-server.ts";
import { SseConnection } from "../support/sse.ts";
import { waitFor } from "../support/wait.ts";

const TENANT = "local";
let app: LiveApp;

beforeAll(async () => {
  // Pings every 50 ms so the idle test sees one quickly; everything else ignores comments.
  app = await startLiveApp({ env: { SSE_PING_MS: "50" } });
});
afterAll(() => app?.stop());

const eventsUrl = (threadId: string, query = "") => `${app.url}/v1/threads/${threadId}/events${query}`;

async function create(
  threadId: string,
  payload: unknown,
  extra: { artifactType?: string; identityKey?: string } = {},
): Promise<Artifact> {
  const r = await app.http("POST", `/v1/threads/${threadId}/artifacts`, {
    artifactType: extra.artifactType ?? "note",
    payload,
    ...(extra.identityKey ? { identityKey: extra.identityKey } : {}),
  });
  expect(r.status, r.text).toBe(201);
  return r.json.artifact;
}

async function update(threadId: string, id: string, payload: unknown): Promise<Artifact> {
  const r = await app.http("PATCH", `/v1/threads/${threadId}/artifacts/${id}`, { payload });
  expect(r.status, r.text).toBe(200);
  return r.json.artifact;
}

async function remove(threadId: string, id: string): Promise<number> {
  const r = await app.http("DELETE", `/v1/threads/${threadId}/artifacts/${id}`);
  expect(r.status, r.text).toBe(200);
  return r.json.removed.seq;
}

/** The thread's patches as stored, read from the rollout folder through a fresh Rollout. */
function rolloutPatches(dir: string, threadId: string): Promise<Patch[]> {
  return new Rollout(new FsBlobStore(join(dir, "rollouts"))).listCommits(TENANT, threadId, 0).then(patchesOf);
}

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

async function open(threadId: string, query = "", headers: Record<string, string> = {}): Promise<SseConnection> {
  const connection = await SseConnection.open(eventsUrl(threadId, query), headers);
  expect(connection.response.status).toBe(200);
  return connection;
}

describe("wire format", () => {
  it("sends retry once first, then each event as id / event: artifact-updated / one-line JSON data", async () => {
    const threadId = newThreadId();
    await create(threadId, { n: 1 });
    await create(threadId, { n: 2 }, { identityKey: "second" });
    const stream = await open(threadId);
    try {
      await stream.untilSeq(2);
      await create(threadId, { n: 3 });
      await stream.untilSeq(3);

      expect(stream.raw.startsWith("retry: 2000\n\n")).toBe(true);
      expect(stream.parser.retries).toEqual([2000]);
      expect(stream.parser.sequence[0]).toBe("retry");

      const patches = await rolloutPatches(app.dir, threadId);
      expect(patches.map((p) => p.seq)).toEqual([1, 2, 3]);
      for (const patch of patches) {
        const data = JSON.stringify(toEvent(patch));
        expect(data).not.toMatch(/[\r\n]/);
        expect(stream.raw).toContain(`id: ${patch.seq}\nevent: artifact-updated\ndata: ${data}\n\n`);
      }
      expect(stream.events.map((e) => [e.id, e.type])).toEqual([
        ["1", "artifact-updated"],
        ["2", "artifact-updated"],
        ["3", "artifact-updated"],
      ]);
      for (const e of stream.events) {
        expect(Object.keys(e.event).sort()).toEqual(["artifact", "op", "seq", "threadId"]);
        expect(e.event.threadId).toBe(threadId);
        expect(e.event.op).toBe("add");
      }
      // Nothing but the four kinds of line this service sends.
      for (const line of stream.parser.lines) {
        expect(line).toMatch(/^(|retry: \d+|: ping|id: \d+|event: artifact-updated|data: \{[^\r\n]*\})$/);
      }
    } finally {
      await stream.close();
    }
  });

  it("answers with text/event-stream, no-cache and X-Accel-Buffering: no", async () => {
    const stream = await open(newThreadId());
    try {
      const headers = stream.response.headers;
      expect(headers.get("content-type")).toMatch(/^text\/event-stream\b/);
      expect(headers.get("cache-control")?.split(",").map((s) => s.trim())).toContain("no-cache");
      expect(headers.get("x-accel-buffering")).toBe("no");
    } finally {
      await stream.close();
    }
  });
});

describe("order and resume", () => {
  it("delivers a concurrent burst in seq order without gaps, to early and late subscribers alike", async () => {
    const threadId = newThreadId();
    const early = await open(threadId);
    try {
      await early.until((c) => c.parser.retries.length > 0, "retry");
      const writes = range(1, 30).map((n) => create(threadId, { n }));
      // A second subscriber joins while the burst is being written, from the start.
      await writes[10];
      const late = await open(threadId, "?since=0");
      try {
        await Promise.all(writes);
        await early.untilSeq(30);
        await late.untilSeq(30);
        expect(early.seqs).toEqual(range(1, 30));
        expect(late.seqs).toEqual(range(1, 30));
        expect(early.events.map((e) => e.id)).toEqual(range(1, 30).map(String));
        const expected = (await rolloutPatches(app.dir, threadId)).map(toEvent);
        expect(early.events.map((e) => e.event)).toEqual(expected);
        expect(late.events.map((e) => e.event)).toEqual(expected);
      } finally {
        await late.close();
      }
    } finally {
      await early.close();
    }
  });

  it("resumes after Last-Event-ID, after ?since=, and prefers the header when both are given", async () => {
    const threadId = newThreadId();
    for (const n of range(1, 5)) await create(threadId, { n });
    const byHeader = await open(threadId, "", { "last-event-id": "2" });
    const byQuery = await open(threadId, "?since=3");
    const both = await open(threadId, "?since=1", { "last-event-id": "4" });
    const fromZero = await open(threadId, "?since=0");
    try {
      await create(threadId, { n: 6 });
      await Promise.all([byHeader, byQuery, both, fromZero].map((s) => s.untilSeq(6)));
      expect(byHeader.seqs).toEqual([3, 4, 5, 6]);
      expect(byQuery.seqs).toEqual([4, 5, 6]);
      expect(both.seqs).toEqual([5, 6]);
      expect(fromZero.seqs).toEqual(range(1, 6));
    } finally {
      await Promise.all([byHeader, byQuery, both, fromZero].map((s) => s.close()));
    }
  });

  it("a resume point beyond the head waits for the thread to get there", async () => {
    const threadId = newThreadId();
    await create(threadId, { n: 1 });
    await create(threadId, { n: 2 });
    const ahead = await open(threadId, "?since=5");
    const control = await open(threadId, "?since=2");
    try {
      for (const n of range(3, 6)) await create(threadId, { n });
      await control.untilSeq(6);
      await ahead.untilSeq(6);
      expect(control.seqs).toEqual([3, 4, 5, 6]);
      expect(ahead.seqs).toEqual([6]);
      expect(ahead.ended).toBe(false);
    } finally {
      await Promise.all([ahead.close(), control.close()]);
    }
  });

  it.each([
    ["Last-Event-ID", "abc"],
    ["Last-Event-ID", "-1"],
    ["Last-Event-ID", "1.5"],
    ["Last-Event-ID", "1e3"],
    ["Last-Event-ID", "0x10"],
    ["Last-Event-ID", "99999999999999999999"],
    ["since", "abc"],
    ["since", "-1"],
    ["since", "2.0"],
    ["since", "+3"],
    ["since", "99999999999999999999"],
  ])("a malformed %s (%s) is a 400 problem+json", async (where, value) => {
    const threadId = newThreadId();
    const r = where === "since"
      ? await app.http("GET", `/v1/threads/${threadId}/events?since=${encodeURIComponent(value)}`)
      : await app.http("GET", `/v1/threads/${threadId}/events`, undefined, { "last-event-id": value });
    expect(r.status).toBe(400);
    expect(r.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect(r.json).toMatchObject({ status: 400, code: "invalid_request" });
    expect(typeof r.json.title).toBe("string");
    expect(typeof r.json.detail).toBe("string");
  });

  it("a malformed Last-Event-ID is a 400 even with a valid since (the header wins)", async () => {
    const r = await app.http("GET", `/v1/threads/${newThreadId()}/events?since=1`, undefined, {
      "last-event-id": "nope",
    });
    expect(r.status).toBe(400);
    expect(r.json.code).toBe("invalid_request");
  });
});

describe("event kinds and thread lifecycle", () => {
  it("sends add, update and remove; remove carries the last state before removal", async () => {
    const threadId = newThreadId();
    const stream = await open(threadId);
    try {
      const created = await create(threadId, { draft: 1 }, { artifactType: "plan", identityKey: "plan:main" });
      const updated = await update(threadId, created.id, { draft: 2 });
      const removedSeq = await remove(threadId, created.id);
      expect(removedSeq).toBe(3);
      await stream.untilSeq(3);
      expect(stream.events.map((e) => e.event.op)).toEqual(["add", "update", "remove"]);
      const [add, upd, rem] = stream.events.map((e) => e.event) as [ArtifactEvent, ArtifactEvent, ArtifactEvent];
      expect(add.artifact).toEqual(created);
      expect(upd.artifact).toEqual(updated);
      expect(upd.artifact).toMatchObject({ version: 2, payload: { draft: 2 } });
      expect(rem.artifact).toEqual(updated);
      expect(rem.seq).toBe(3);
      expect(stream.events.map((e) => e.event)).toEqual((await rolloutPatches(app.dir, threadId)).map(toEvent));
    } finally {
      await stream.close();
    }
  });

  it("a stream of a thread that does not exist yet is 200 and receives its first artifact when it is created", async () => {
    const threadId = newThreadId("unborn");
    expect((await app.http("GET", `/v1/threads/${threadId}`)).status).toBe(404);
    const stream = await open(threadId);
    try {
      await stream.until((c) => c.parser.retries.length > 0, "retry");
      const created = await create(threadId, { first: true });
      await stream.untilSeq(1);
      expect(stream.events).toHaveLength(1);
      expect(stream.events[0]?.id).toBe("1");
      expect(stream.events[0]?.event).toEqual({ threadId, seq: 1, op: "add", artifact: created });
    } finally {
      await stream.close();
    }
  });

  it("sends `: ping` comments while idle", async () => {
    const stream = await open(newThreadId());
    try {
      await stream.until((c) => c.parser.comments.includes("ping"), "a ping comment");
      expect(stream.raw).toContain("\n: ping\n\n");
      expect(stream.events).toEqual([]);
    } finally {
      await stream.close();
    }
  });
});

describe("maximum lifetime", () => {
  let shortLived: LiveApp;
  beforeAll(async () => {
    shortLived = await startLiveApp({ env: { SSE_MAX_LIFETIME_MS: "1000" } });
  });
  afterAll(() => shortLived?.stop());

  it("the server ends a stream after SSE_MAX_LIFETIME_MS, cleanly", async () => {
    const threadId = newThreadId();
    const stream = await SseConnection.open(`${shortLived.url}/v1/threads/${threadId}/events`);
    // Live first: a write is delivered on this connection...
    await stream.until((c) => c.parser.retries.length > 0, "retry");
    const r = await shortLived.http("POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "note", payload: 1 });
    expect(r.status).toBe(201);
    await stream.untilSeq(1);
    // ...then the server closes it by itself (a clean end of the body, not an error).
    await stream.untilEnded({ timeoutMs: 15_000 });
    expect(stream.error).toBeUndefined();
    expect(stream.parser.retries).toEqual([2000]);
    expect(stream.seqs).toEqual([1]);
    await waitFor("the feed to be released", () => shortLived.feeds.size === 0);
  });

  it("the typed client resumes across lifetimes: every event once, in order", async () => {
    const threadId = newThreadId();
    const requested: Array<string | null> = [];
    const recordingFetch: typeof fetch = (input, init) => {
      const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
      if (url.endsWith("/events")) requested.push(new Headers(init?.headers).get("last-event-id"));
      return fetch(input, init);
    };
    const client = createArtifactsClient({ baseUrl: shortLived.url, fetch: recordingFetch });
    const received: ArtifactEvent[] = [];
    const stop = new AbortController();
    const errors: unknown[] = [];
    const done = client.subscribe(threadId, {
      onEvent: (e) => received.push(e),
      onError: (e) => errors.push(e),
      signal: stop.signal,
    });
    try {
      // Keep writing (without waiting for delivery) until the client has had to reconnect twice.
      let written = 0;
      for (let i = 0; i < 5000 && requested.length < 3; i++) {
        await client.createArtifact(threadId, { artifactType: "tick", payload: { i } });
        written++;
      }
      expect(requested.length).toBeGreaterThanOrEqual(3);
      await waitFor(`${written} events`, () => received.length >= written);
      expect(received.map((e) => e.seq)).toEqual(range(1, written));
      expect(received).toEqual((await rolloutPatches(shortLived.dir, threadId)).map(toEvent));
      // Each reconnect resumed after the last event seen, so nothing was sent twice.
      expect(requested[0]).toBe("0");
      const resumes = requested.slice(1).map(Number);
      for (const [k, seq] of resumes.entries()) {
        expect(seq).toBeGreaterThan(0);
        if (k > 0) expect(seq).toBeGreaterThanOrEqual(resumes[k - 1] as number);
      }
    } finally {
      stop.abort();
      await done;
    }
    expect(errors).toEqual([]);
  });
});

describe("property: random writes, disconnects and resumes", () => {
  type Op =
    | { kind: "create"; payload: unknown }
    | { kind: "update"; pick: number; payload: unknown }
    | { kind: "remove"; pick: number }
    | { kind: "disconnect" }
    | { kind: "reconnect"; via: "header" | "query" | "both" };

  const payload = fc.oneof(
    fc.integer(),
    fc.string({ maxLength: 12 }),
    fc.dictionary(fc.string({ maxLength: 4 }), fc.integer(), { maxKeys: 3 }),
  );
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 4, arbitrary: payload.map((p) => ({ kind: "create" as const, payload: p })) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("update" as const), pick: fc.nat(), payload }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("remove" as const), pick: fc.nat() }) },
    { weight: 2, arbitrary: fc.constant({ kind: "disconnect" as const }) },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant("reconnect" as const),
        via: fc.constantFrom("header" as const, "query" as const, "both" as const),
      }),
    },
  );

  it("events joined across reconnects equal the rollout's patches: in order, no duplicates, no gaps", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), async (ops) => {
        const threadId = newThreadId("prop");
        const finished: SseConnection[] = [];
        let current: SseConnection | null = await open(threadId);
        const lastId = () =>
          (current?.lastEventId || finished.findLast((c) => c.lastEventId !== "")?.lastEventId) ?? "";
        const live: string[] = [];
        let head = 0;
        const reconnect = async (via: "header" | "query" | "both") => {
          const id = lastId();
          if (id === "") current = await open(threadId);
          else if (via === "header") current = await open(threadId, "", { "last-event-id": id });
          else if (via === "query") current = await open(threadId, `?since=${id}`);
          // A stale since beside the header: the header wins.
          else current = await open(threadId, "?since=0", { "last-event-id": id });
        };
        try {
          for (const step of ops) {
            if (step.kind === "create") {
              live.push((await create(threadId, step.payload)).id);
              head++;
            } else if (step.kind === "update" && live.length > 0) {
              await update(threadId, live[step.pick % live.length] as string, step.payload);
              head++;
            } else if (step.kind === "remove" && live.length > 0) {
              const [id] = live.splice(step.pick % live.length, 1);
              await remove(threadId, id as string);
              head++;
            } else if (step.kind === "disconnect" && current) {
              const closing: SseConnection = current;
              current = null;
              await closing.close();
              finished.push(closing);
            } else if (step.kind === "reconnect" && !current) {
              await reconnect(step.via);
            }
          }
          if (!current) await reconnect("header");
          const last = current as unknown as SseConnection;
          // Wait until the joined events reach the head (the last connection may have nothing left to get).
          const before = Math.max(0, ...finished.flatMap((c) => c.seqs));
          await last.until((c) => Math.max(before, ...c.seqs) >= head, `seq ${head} across connections`);
          const all = [...finished, last].flatMap((c) => c.events);
          const patches = await rolloutPatches(app.dir, threadId);
          expect(patches.map((p) => p.seq)).toEqual(range(1, head));
          expect(all.map((e) => e.id)).toEqual(range(1, head).map(String));
          expect(all.map((e) => e.event)).toEqual(patches.map(toEvent));
        } finally {
          await (current as SseConnection | null)?.close();
        }
      }),
      { numRuns: 60 },
    );
  });
});
