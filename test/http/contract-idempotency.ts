import { describe, expect, it } from "vitest";
import type { ContractContext, HttpResult } from "./contract.ts";
import { expectProblem, uniqueThreadId } from "./contract.ts";

const MERGE = { "content-type": "application/merge-patch+json" };

/** A key no other test (or earlier run against the same store) uses. */
function newKey(label: string): string {
  return `${label}-${crypto.randomUUID()}`;
}

/** What a client compares between two answers: status, body, and the headers a write sets. */
function answerOf(result: HttpResult) {
  return { status: result.status, json: result.json, location: result.headers.get("location") };
}

/**
 * API.md "Idempotency-Key (every write)", over HTTP: part of the contract every target
 * runs. A repeat answers what the first answer said and writes nothing (the head seq and
 * the thread read back say so); another body or route with the key is 422; the key is
 * kept across a restart; concurrent repeats make one effect.
 */
export function describeIdempotency(ctx: ContractContext): void {
  const { call, create, headSeq } = ctx;
  const keyed = (key: string, headers: Record<string, string> = {}) => ({ "idempotency-key": key, ...headers });
  const post = (threadId: string, body: unknown, key: string) =>
    call("POST", `/v1/threads/${threadId}/artifacts`, body, keyed(key));

  describe("Idempotency-Key", () => {
    it("create: a repeat answers the first 201 (same artifact, Location) and appends nothing", async () => {
      const threadId = uniqueThreadId("idem-create");
      const key = newKey("create");
      const first = await post(threadId, { artifactType: "note", payload: { n: 1 } }, key);
      expect(first.status).toBe(201);
      const again = await post(threadId, { artifactType: "note", payload: { n: 1 } }, key);
      expect(answerOf(again)).toEqual(answerOf(first));
      expect(await headSeq(threadId)).toBe(1);
      // Without the key the same body is a second artifact: the key is what made it one.
      await create(threadId, { artifactType: "note", payload: { n: 1 } });
      expect(await headSeq(threadId)).toBe(2);
    });

    it("update, merge and remove: each repeat answers as its first and appends nothing", async () => {
      const threadId = uniqueThreadId("idem-writes");
      const created = await create(threadId, { artifactType: "plan", payload: { a: 1, b: 1 } });
      const id = created.json.artifact.id as string;
      const path = `/v1/threads/${threadId}/artifacts/${id}`;

      const updateKey = newKey("update");
      const update = await call("PATCH", path, { payload: { a: 2, b: 2 } }, keyed(updateKey, { "if-match": '"1"' }));
      expect(update.status).toBe(200);
      // The If-Match would fail now (version 2): the repeat is answered, not decided again.
      const updateAgain = await call(
        "PATCH",
        path,
        { payload: { a: 2, b: 2 } },
        keyed(updateKey, { "if-match": '"1"' }),
      );
      expect(answerOf(updateAgain)).toEqual(answerOf(update));
      expect(await headSeq(threadId)).toBe(2);

      const mergeKey = newKey("merge");
      const merge = await call("PATCH", path, { payload: { b: null } }, keyed(mergeKey, MERGE));
      expect(merge.status).toBe(200);
      expect(merge.json.artifact).toMatchObject({ version: 3, payload: { a: 2 } });
      const mergeAgain = await call("PATCH", path, { payload: { b: null } }, keyed(mergeKey, MERGE));
      expect(answerOf(mergeAgain)).toEqual(answerOf(merge));
      expect(await headSeq(threadId)).toBe(3);

      const removeKey = newKey("remove");
      const remove = await call("DELETE", path, undefined, keyed(removeKey));
      expect(remove.status).toBe(200);
      // Unkeyed, a second remove is a 404; keyed, it is the first answer again.
      const removeAgain = await call("DELETE", path, undefined, keyed(removeKey));
      expect(answerOf(removeAgain)).toEqual(answerOf(remove));
      expectProblem(await call("DELETE", path), 404, "artifact_not_found");
      expect(await headSeq(threadId)).toBe(4);
    });

    it("a thread's delete and a fork: each repeat answers as its first and writes nothing", async () => {
      const source = uniqueThreadId("idem-fork-src");
      await create(source, { artifactType: "note", payload: { n: 1 } });
      const target = uniqueThreadId("idem-fork");
      const forkKey = newKey("fork");
      const fork = await call("POST", `/v1/threads/${source}/fork`, { threadId: target }, keyed(forkKey));
      expect(fork.status).toBe(201);
      // Unkeyed, a second fork is 409 thread_exists; keyed, it is the first answer again.
      const forkAgain = await call("POST", `/v1/threads/${source}/fork`, { threadId: target }, keyed(forkKey));
      expect(answerOf(forkAgain)).toEqual(answerOf(fork));
      expect(await headSeq(target)).toBe(1);

      const deleteKey = newKey("delete");
      const deleted = await call("DELETE", `/v1/threads/${target}`, undefined, keyed(deleteKey));
      expect(deleted.status).toBe(200);
      const deletedAgain = await call("DELETE", `/v1/threads/${target}`, undefined, keyed(deleteKey));
      expect(answerOf(deletedAgain)).toEqual(answerOf(deleted));
      expectProblem(await call("DELETE", `/v1/threads/${target}`), 404, "thread_not_found");
      // Still deleted (nothing written after the tombstone): a new life would start at seq 3.
      expectProblem(await call("GET", `/v1/threads/${target}`), 404, "thread_not_found");
      const next = await create(target, { artifactType: "note", payload: {} });
      expect(next.json.thread.rolloutSeq).toBe(3);
    });

    it("the same key with another body or another route is 422 idempotency_key_reused and writes nothing", async () => {
      const threadId = uniqueThreadId("idem-reuse");
      const key = newKey("reuse");
      const first = await post(threadId, { artifactType: "note", payload: { n: 1 } }, key);
      expect(first.status).toBe(201);
      expectProblem(
        await post(threadId, { artifactType: "note", payload: { n: 2 } }, key),
        422,
        "idempotency_key_reused",
      );
      const id = first.json.artifact.id as string;
      const path = `/v1/threads/${threadId}/artifacts/${id}`;
      expectProblem(await call("PATCH", path, { payload: { n: 1 } }, keyed(key)), 422, "idempotency_key_reused");
      expectProblem(await call("DELETE", path, undefined, keyed(key)), 422, "idempotency_key_reused");
      expectProblem(
        await call("DELETE", `/v1/threads/${threadId}`, undefined, keyed(key)),
        422,
        "idempotency_key_reused",
      );
      expect(await headSeq(threadId)).toBe(1);
      const read = await call("GET", path);
      expect(read.json.artifact).toEqual(first.json.artifact);
    });

    it("a refused write is not remembered: the same request is decided again", async () => {
      const threadId = uniqueThreadId("idem-refused");
      const key = newKey("refused");
      // No thread yet: the delete is a 404, and nothing records the key.
      expectProblem(await call("DELETE", `/v1/threads/${threadId}`, undefined, keyed(key)), 404, "thread_not_found");
      await create(threadId, { artifactType: "note", payload: {} });
      const deleted = await call("DELETE", `/v1/threads/${threadId}`, undefined, keyed(key));
      expect(deleted.status).toBe(200);
      expect(deleted.json.deleted).toEqual({ threadId, seq: 2 });
    });

    it("keys: 255 printable characters are taken, 256 or a non-ASCII one is a 400 that writes nothing", async () => {
      const threadId = uniqueThreadId("idem-syntax");
      const longest = `k${"~".repeat(253)} `.slice(0, 255);
      expect(longest).toHaveLength(255);
      const ok = await post(threadId, { artifactType: "note", payload: {} }, longest);
      expect(ok.status).toBe(201);
      expect(answerOf(await post(threadId, { artifactType: "note", payload: {} }, longest))).toEqual(answerOf(ok));
      expectProblem(
        await post(threadId, { artifactType: "note", payload: {} }, "k".repeat(256)),
        400,
        "invalid_request",
      );
      expectProblem(await post(threadId, { artifactType: "note", payload: {} }, "caf\u00e9"), 400, "invalid_request");
      expect(await headSeq(threadId)).toBe(1);
    });

    it("is kept across a restart", async () => {
      const threadId = uniqueThreadId("idem-restart");
      const key = newKey("restart");
      const first = await post(threadId, { artifactType: "note", payload: { n: 1 } }, key);
      expect(first.status).toBe(201);
      await ctx.restart();
      const again = await post(threadId, { artifactType: "note", payload: { n: 1 } }, key);
      expect(answerOf(again)).toEqual(answerOf(first));
      expect(await headSeq(threadId)).toBe(1);
    });

    it("each write sent at once through two processes on one store (or twice at once to a Worker): one effect each", async () => {
      const made = await ctx.target().sibling?.();
      const second = made ?? ctx.target();
      const through = async (
        target: { fetch: typeof second.fetch },
        method: string,
        path: string,
        body: unknown,
        key: string,
        headers: Record<string, string> = {},
      ) => {
        const init: RequestInit = { method, headers: { ...keyed(key), ...headers } };
        if (body !== undefined) {
          init.body = JSON.stringify(body);
          (init.headers as Record<string, string>)["content-type"] ??= "application/json";
        }
        const response = await target.fetch(path, init);
        const text = await response.text();
        return { status: response.status, json: text ? JSON.parse(text) : null };
      };
      const both = (method: string, path: string, body: unknown, key: string, headers?: Record<string, string>) =>
        Promise.all([
          through(ctx.target(), method, path, body, key, headers),
          through(second, method, path, body, key, headers),
        ]);
      try {
        const threadId = uniqueThreadId("idem-two");
        const base = `/v1/threads/${threadId}`;
        const created = await both(
          "POST",
          `${base}/artifacts`,
          { artifactType: "note", payload: { n: 1 } },
          newKey("c"),
        );
        expect(created.map((r) => r.status)).toEqual([201, 201]);
        expect(created[1].json).toEqual(created[0].json);
        const id = created[0].json.artifact.id as string;
        const updated = await both("PATCH", `${base}/artifacts/${id}`, { payload: { n: 2 } }, newKey("u"));
        expect(updated[1]).toEqual(updated[0]);
        expect(updated[0].json.artifact.version).toBe(2);
        const merged = await both("PATCH", `${base}/artifacts/${id}`, { payload: { m: 1 } }, newKey("m"), MERGE);
        expect(merged[1]).toEqual(merged[0]);
        expect(merged[0].json.artifact).toMatchObject({ version: 3, payload: { n: 2, m: 1 } });
        const removed = await both("DELETE", `${base}/artifacts/${id}`, undefined, newKey("r"));
        expect(removed[1]).toEqual(removed[0]);
        expect(removed[0].status).toBe(200);
        // One seq per write: create, update, merge, remove.
        expect(await headSeq(threadId)).toBe(4);
        const deleted = await both("DELETE", base, undefined, newKey("d"));
        expect(deleted[1]).toEqual(deleted[0]);
        expect(deleted[0]).toEqual({ status: 200, json: { deleted: { threadId, seq: 5 } } });
        // The next life starts right after the one tombstone.
        expect((await create(threadId, { artifactType: "note", payload: {} })).json.thread.rolloutSeq).toBe(6);
      } finally {
        await made?.close();
      }
    });

    it("concurrent repeats of one keyed create make one artifact, and every answer is its", async () => {
      const threadId = uniqueThreadId("idem-concurrent");
      const key = newKey("concurrent");
      const answers = await Promise.all(
        Array.from({ length: 8 }, () => post(threadId, { artifactType: "note", payload: { n: 1 } }, key)),
      );
      const ids = new Set(answers.map((a) => a.json?.artifact?.id));
      expect({ statuses: answers.map((a) => a.status), ids: ids.size }).toEqual({
        statuses: answers.map(() => 201),
        ids: 1,
      });
      expect(await headSeq(threadId)).toBe(1);
      const read = await call("GET", `/v1/threads/${threadId}`);
      expect(read.json.thread.artifacts).toHaveLength(1);
    });
  });
}
