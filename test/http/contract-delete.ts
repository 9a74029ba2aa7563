// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
import { describe, expect, it } from "vitest";
import { SpecSseParser } from "../support/sse.ts";
import type { ContractContext, HttpTarget } from "./contract.ts";
import { expectProblem, uniqueThreadId } from "./contract.ts";

interface RawEvent {
  id: string;
  type: string;
  data: any;
}

/**
 * Reads a stream until it has `count` events of any type, or until it ends (`count`
 * omitted: until the server ends it).
 */
async function readEvents(target: HttpTarget, path: string, headers: Record<string, string> = {}, count?: number) {
  const controller = new AbortController();
  const response = await target.fetch(path, {
    headers: { accept: "text/event-stream", ...headers },
    signal: controller.signal,
  });
  expect(response.status).toBe(200);
  const parser = new SpecSseParser();
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let ended = false;
  try {
    while (count === undefined || parser.events.length < count) {
      const { done, value } = await reader.read();
      if (done) {
        ended = true;
        break;
      }
      parser.push(decoder.decode(value, { stream: true }));
    }
  } finally {
    controller.abort();
    await reader.cancel().catch(() => {});
  }
  const events: RawEvent[] = parser.events.map((e) => ({ id: e.lastEventId, type: e.type, data: JSON.parse(e.data) }));
  return { events, ended };
}

/** API.md "Thread history, forks and deletion": deletion, part of the contract every target runs. */
export function describeDeletion(ctx: ContractContext): void {
  const { call, create } = ctx;

  describe("deleting a thread", () => {
    it("ends its life: 200 {deleted}, then every read answers as if it never existed", async () => {
      const threadId = uniqueThreadId("del");
      const a = (await create(threadId, { artifactType: "plan", identityKey: "main", payload: 1 })).json.artifact;
      await create(threadId, { artifactType: "note", payload: 2 });
      await call("PATCH", `/v1/threads/${threadId}/artifacts/${a.id}`, { payload: 3 });
      const deleted = await call("DELETE", `/v1/threads/${threadId}`);
      expect(deleted.status).toBe(200);
      expect(deleted.json).toEqual({ deleted: { threadId, seq: 4 } });

      const ghost = uniqueThreadId("del-ghost");
      for (
        const [path, ghostPath] of [
          [`/v1/threads/${threadId}`, `/v1/threads/${ghost}`],
          [`/v1/threads/${threadId}?consistency=cache`, `/v1/threads/${ghost}?consistency=cache`],
          [`/v1/threads/${threadId}?atSeq=2`, `/v1/threads/${ghost}?atSeq=2`],
          [`/v1/threads/${threadId}/artifacts/${a.id}`, `/v1/threads/${ghost}/artifacts/${a.id}`],
          [`/v1/threads/${threadId}/artifacts/${a.id}/versions`, `/v1/threads/${ghost}/artifacts/${a.id}/versions`],
        ] as const
      ) {
        const result = await call("GET", path);
        expectProblem(result, 404, "thread_not_found");
        // Exactly the answer for a thread no one ever wrote.
        expect(result.json.detail.replace(threadId, "ID")).toBe(
          (await call("GET", ghostPath)).json.detail.replace(ghost, "ID"),
        );
      }
      const listed = await call("GET", "/v1/threads?limit=200");
      expect(listed.json.threads.map((t: any) => t.id)).not.toContain(threadId);
      // Writes to its old artifacts, a second delete: 404, nothing written.
      expectProblem(
        await call("PATCH", `/v1/threads/${threadId}/artifacts/${a.id}`, { payload: 9 }),
        404,
        "thread_not_found",
      );
      expectProblem(await call("DELETE", `/v1/threads/${threadId}/artifacts/${a.id}`), 404, "thread_not_found");
      expectProblem(await call("DELETE", `/v1/threads/${threadId}`), 404, "thread_not_found");
      expectProblem(await call("DELETE", `/v1/threads/${ghost}`), 404, "thread_not_found");
      expectProblem(
        await call("POST", `/v1/threads/${threadId}/fork`, { threadId: uniqueThreadId("del-fork") }),
        404,
        "thread_not_found",
      );
    });

    it("checks If-Match against the rolloutSeq: a mismatch is 412 and deletes nothing", async () => {
      const threadId = uniqueThreadId("del-if");
      await create(threadId, { artifactType: "n", payload: 1 });
      await create(threadId, { artifactType: "n", payload: 2 });
      expectProblem(
        await call("DELETE", `/v1/threads/${threadId}`, undefined, { "if-match": '"1"' }),
        412,
        "version_conflict",
      );
      expect((await call("GET", `/v1/threads/${threadId}`)).json.thread.artifacts).toHaveLength(2);
      expectProblem(
        await call("DELETE", `/v1/threads/${threadId}`, undefined, { "if-match": "nope" }),
        400,
        "invalid_request",
      );
      const ok = await call("DELETE", `/v1/threads/${threadId}`, undefined, { "if-match": '"2"' });
      expect(ok.json).toEqual({ deleted: { threadId, seq: 3 } });
    });

    it("a later create starts a new life at seq + 1, with nothing of the old one", async () => {
      const threadId = uniqueThreadId("del-life");
      const old = (await create(threadId, { artifactType: "plan", identityKey: "main", payload: "old" })).json.artifact;
      await call("DELETE", `/v1/threads/${threadId}`);
      // The old identity is free again: a new artifact, not the old one.
      const fresh = await create(threadId, { artifactType: "plan", identityKey: "main", payload: "new" }, 201);
      expect(fresh.json.artifact.id).not.toBe(old.id);
      expect(fresh.json.artifact.seq).toBe(3);
      const thread = (await call("GET", `/v1/threads/${threadId}`)).json.thread;
      expect(thread.rolloutSeq).toBe(3);
      expect(thread.artifacts.map((x: any) => x.payload)).toEqual(["new"]);
      expect(thread.createdAt).toBe(fresh.json.artifact.createdAt);
      expect((await call("GET", `/v1/threads/${threadId}?atSeq=3`)).status).toBe(200);
      expectProblem(await call("GET", `/v1/threads/${threadId}?atSeq=1`), 404, "thread_not_found");
      expectProblem(await call("GET", `/v1/threads/${threadId}/artifacts/${old.id}`), 404, "artifact_not_found");
      const versions = await call("GET", `/v1/threads/${threadId}/artifacts/${fresh.json.artifact.id}/versions`);
      expect(versions.json.versions.map((v: any) => v.seq)).toEqual([3]);
      expect((await call("GET", "/v1/threads?limit=200")).json.threads.map((t: any) => t.id)).toContain(threadId);
      // A fork onto a deleted id is a new life too.
      const source = uniqueThreadId("del-src");
      await create(source, { artifactType: "n", payload: "forked" });
      const target = uniqueThreadId("del-target");
      await create(target, { artifactType: "n", payload: "gone" });
      await call("DELETE", `/v1/threads/${target}`);
      const forked = await call("POST", `/v1/threads/${source}/fork`, { threadId: target });
      expect(forked.status).toBe(201);
      expect(forked.json.thread.rolloutSeq).toBe(3);
      expect(forked.json.thread.artifacts.map((x: any) => x.payload)).toEqual(["forked"]);
    });

    it("open streams get thread-deleted (id: its seq) and end; a stream from before it gets it first, then the next life", async () => {
      const target = ctx.target();
      const threadId = uniqueThreadId("del-stream");
      await create(threadId, { artifactType: "n", payload: 1 });
      await create(threadId, { artifactType: "n", payload: 2 });
      const open = readEvents(target, `/v1/threads/${threadId}/events`);
      // Another thread on a many-threads stream keeps going after one of its threads is deleted.
      const other = uniqueThreadId("del-other");
      const many = readEvents(target, `/v1/events?threads=${threadId},${other}`, {}, 4);
      expect((await call("DELETE", `/v1/threads/${threadId}`)).status).toBe(200);
      const live = await open;
      expect(live.ended).toBe(true);
      expect(live.events.map((e) => [e.id, e.type])).toEqual([["1", "artifact-updated"], ["2", "artifact-updated"], [
        "3",
        "thread-deleted",
      ]]);
      expect(live.events[2]?.data).toEqual({ threadId, seq: 3 });
      await create(other, { artifactType: "n", payload: "other" });
      const multi = await many;
      const of = (id: string) => multi.events.filter((e) => e.data.threadId === id).map((e) => [e.data.seq, e.type]);
      expect(of(threadId)).toEqual([[1, "artifact-updated"], [2, "artifact-updated"], [3, "thread-deleted"]]);
      expect(of(other)).toEqual([[1, "artifact-updated"]]);

      // Resuming from before the delete: the tombstone first (its past is gone), and the stream ends.
      const resumed = await readEvents(target, `/v1/threads/${threadId}/events?since=1`);
      expect(resumed.events.map((e) => [e.id, e.type])).toEqual([["3", "thread-deleted"]]);
      // Resuming after it (what an EventSource sends next): the thread's next life.
      const next = readEvents(target, `/v1/threads/${threadId}/events`, { "last-event-id": "3" }, 1);
      await create(threadId, { artifactType: "n", payload: "again" });
      expect((await next).events.map((e) => [e.id, e.type, e.data.artifact?.payload])).toEqual([
        ["4", "artifact-updated", "again"],
      ]);
    });
  });
}
