import { describe, expect, it } from "vitest";
import { RFC7396_EXAMPLES } from "../model/rfc7396.ts";
import type { ContractContext } from "./contract.ts";
import { expectArtifactShape, expectProblem, uniqueThreadId } from "./contract.ts";

const MERGE = { "content-type": "application/merge-patch+json" };

/** API.md "Updates as merge patches", over HTTP: part of the contract every target runs. */
export function describeMergePatches(ctx: ContractContext): void {
  const { call, create, headSeq } = ctx;

  const merge = (threadId: string, id: string, patch: unknown, headers: Record<string, string> = {}) =>
    call("PATCH", `/v1/threads/${threadId}/artifacts/${id}`, { payload: patch }, { ...MERGE, ...headers });

  describe("merge patches (application/merge-patch+json)", () => {
    it("applies each example of RFC 7396 appendix A to the payload", async () => {
      const threadId = uniqueThreadId("rfc7396");
      for (const example of RFC7396_EXAMPLES) {
        const created = await create(threadId, { artifactType: "example", payload: example.original });
        const id = created.json.artifact.id as string;
        const result = await merge(threadId, id, example.patch);
        if (example.patch === null) {
          // `{"payload": null}` would remove the payload member itself: refused, nothing written.
          expectProblem(result, 400, "invalid_request");
          continue;
        }
        expect({ example, status: result.status, payload: result.json?.artifact?.payload }).toEqual({
          example,
          status: 200,
          payload: example.result,
        });
        expect(result.json.artifact.version).toBe(2);
      }
      // Every example but the refused one appended a create and an update.
      expect(await headSeq(threadId)).toBe(RFC7396_EXAMPLES.length * 2 - 1);
    });

    it("answers like a plain update: version, seq, thread, and the event carries the whole merged artifact", async () => {
      const threadId = uniqueThreadId("merge");
      const created = await create(threadId, {
        artifactType: "plan",
        identityKey: "p",
        payload: { steps: { "1": "done", "2": "todo" }, draft: "x", title: "t" },
      });
      const id = created.json.artifact.id as string;
      const result = await merge(threadId, id, { steps: { "2": "done" }, draft: null });
      expect(result.status).toBe(200);
      expectArtifactShape(result.json.artifact);
      expect(result.json.artifact).toMatchObject({
        id,
        identityKey: "p",
        version: 2,
        seq: 2,
        createdAt: created.json.artifact.createdAt,
        payload: { steps: { "1": "done", "2": "done" }, title: "t" },
      });
      expect(result.json.thread).toEqual({ id: threadId, rolloutSeq: 2 });
      const read = await call("GET", `/v1/threads/${threadId}/artifacts/${id}`);
      expect(read.json.artifact).toEqual(result.json.artifact);
      const events = await ctx.readEvents(threadId, 2);
      expect(events[1]).toMatchObject({ seq: 2, op: "update", artifact: result.json.artifact });
    });

    it("concurrent merge patches of one artifact all apply, one after another: no lost update", async () => {
      const threadId = uniqueThreadId("merge-race");
      const created = await create(threadId, { artifactType: "doc", payload: { base: true } });
      const id = created.json.artifact.id as string;
      const n = 12;
      const results = await Promise.all(
        Array.from({ length: n }, (_, i) => merge(threadId, id, { [`k${i}`]: i })),
      );
      expect(results.map((r) => r.status)).toEqual(results.map(() => 200));
      // Each merge saw the one before it: versions 2..n+1, each once.
      expect(results.map((r) => r.json.artifact.version).sort((a, b) => a - b)).toEqual(
        Array.from({ length: n }, (_, i) => i + 2),
      );
      const final = await call("GET", `/v1/threads/${threadId}/artifacts/${id}`);
      expect(final.json.artifact.version).toBe(n + 1);
      expect(final.json.artifact.payload).toEqual({
        base: true,
        ...Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i])),
      });
    });

    it("checks If-Match like an update: a mismatch is 412 and appends nothing", async () => {
      const threadId = uniqueThreadId("merge-if");
      const created = await create(threadId, { artifactType: "doc", payload: { a: 1 } });
      const id = created.json.artifact.id as string;
      expectProblem(await merge(threadId, id, { a: 2 }, { "if-match": '"7"' }), 412, "version_conflict");
      expect(await headSeq(threadId)).toBe(1);
      const ok = await merge(threadId, id, { a: 2 }, { "if-match": '"1"' });
      expect(ok.status).toBe(200);
      expect(ok.json.artifact.payload).toEqual({ a: 2 });
    });

    it("refuses other members, a removed payload, a non-object patch, bad JSON and unknown targets, writing nothing", async () => {
      const threadId = uniqueThreadId("merge-bad");
      const created = await create(threadId, { artifactType: "doc", payload: { a: 1 } });
      const id = created.json.artifact.id as string;
      const path = `/v1/threads/${threadId}/artifacts/${id}`;
      for (
        const body of [
          { payload: { a: 2 }, artifactType: "other" },
          { payload: { a: 2 }, version: 3 },
          { payload: null },
          {},
          ["payload"],
          "just text",
          7,
        ]
      ) {
        expectProblem(await call("PATCH", path, JSON.stringify(body), MERGE), 400, "invalid_request");
      }
      expectProblem(await call("PATCH", path, "{not json", MERGE), 400, "invalid_request");
      expectProblem(
        await merge(threadId, "00000000-0000-7000-8000-000000000000", { a: 2 }),
        404,
        "artifact_not_found",
      );
      expectProblem(await merge(uniqueThreadId("merge-none"), id, { a: 2 }), 404, "thread_not_found");
      expect(await headSeq(threadId)).toBe(1);
      const read = await call("GET", path);
      expect(read.json.artifact).toEqual(created.json.artifact);
    });

    it("application/json still replaces the payload whole", async () => {
      const threadId = uniqueThreadId("merge-json");
      const created = await create(threadId, { artifactType: "doc", payload: { a: 1, b: 2 } });
      const result = await call("PATCH", `/v1/threads/${threadId}/artifacts/${created.json.artifact.id}`, {
        payload: { a: 5 },
      });
      expect(result.json.artifact.payload).toEqual({ a: 5 });
    });
  });
}
