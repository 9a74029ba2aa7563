// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
import { describe, expect, it } from "vitest";
import type { ContractContext } from "./contract.ts";
import { expectArtifactShape, expectProblem, uniqueThreadId } from "./contract.ts";

/** API.md "Thread history, forks": as-of reads, versions and forks, part of the contract every target runs. */
export function describeHistory(ctx: ContractContext): void {
  const { call, create } = ctx;

  describe("history: reads as of a seq, versions", () => {
    it("?atSeq=N is the thread right after N, at every seq, immutable, past compaction", async () => {
      const threadId = uniqueThreadId("asof");
      // Past the default compaction cadence (a delta every 64 seqs): the early states come from compaction objects.
      const states: unknown[] = [null];
      const ids: string[] = [];
      for (let i = 0; i < 70; i++) {
        if (i % 10 === 9 && ids.length > 0) {
          const id = ids.shift() as string;
          expect((await call("DELETE", `/v1/threads/${threadId}/artifacts/${id}`)).status).toBe(200);
        } else if (i % 5 === 4 && ids.length > 0) {
          expect((await call("PATCH", `/v1/threads/${threadId}/artifacts/${ids[0]}`, { payload: { v: i } })).status)
            .toBe(200);
        } else {
          ids.push((await create(threadId, { artifactType: "n", payload: i })).json.artifact.id);
        }
        states.push((await call("GET", `/v1/threads/${threadId}`)).json.thread);
      }
      for (const seq of [1, 2, 9, 10, 33, 63, 64, 65, 69, 70]) {
        const past = await call("GET", `/v1/threads/${threadId}?atSeq=${seq}`);
        expect({ seq, status: past.status }).toEqual({ seq, status: 200 });
        expect(past.json.thread).toEqual(states[seq]);
        expect(past.headers.get("etag")).toBe(`"${seq}"`);
        expect(past.headers.get("cache-control")).toBe("private, max-age=31536000, immutable");
      }
      const notModified = await call("GET", `/v1/threads/${threadId}?atSeq=5`, undefined, { "if-none-match": '"5"' });
      expect(notModified.status).toBe(304);
      expectProblem(await call("GET", `/v1/threads/${threadId}?atSeq=71`), 404, "thread_not_found");
      expectProblem(await call("GET", `/v1/threads/${threadId}?atSeq=0`), 404, "thread_not_found");
      expectProblem(await call("GET", `/v1/threads/${uniqueThreadId("asof-none")}?atSeq=1`), 404, "thread_not_found");
      for (const bad of ["-1", "x", "1.5", "01"]) {
        expectProblem(await call("GET", `/v1/threads/${threadId}?atSeq=${bad}`), 400, "invalid_request");
      }
      expectProblem(await call("GET", `/v1/threads/${threadId}?atSeq=3&minSeq=2`), 400, "invalid_request");
    });

    it("/versions lists every version of one artifact, oldest first, a remove as its own entry, page by page", async () => {
      const threadId = uniqueThreadId("versions");
      const a = (await create(threadId, { artifactType: "doc", payload: { v: 1 } })).json.artifact;
      const b = (await create(threadId, { artifactType: "doc", payload: "other" })).json.artifact;
      const path = `/v1/threads/${threadId}/artifacts/${a.id}`;
      const v2 = (await call("PATCH", path, { payload: { v: 2 } })).json.artifact;
      const v3 = (await call("PATCH", path, { payload: { w: 3 } }, { "content-type": "application/merge-patch+json" }))
        .json.artifact;
      await call("PATCH", `/v1/threads/${threadId}/artifacts/${b.id}`, { payload: "other 2" });
      expect((await call("DELETE", path)).status).toBe(200);

      const all = await call("GET", `${path}/versions`);
      expect(all.status).toBe(200);
      expect(all.json.nextCursor).toBeNull();
      expect(all.json.versions.map((v: { version: number; seq: number; op: string }) => [v.version, v.seq, v.op]))
        .toEqual([[1, 1, "add"], [2, 3, "update"], [3, 4, "update"], [3, 6, "remove"]]);
      expect(all.json.versions.map((v: { artifact: unknown }) => v.artifact)).toEqual([a, v2, v3, v3]);
      for (const version of all.json.versions) {
        expect(Object.keys(version).sort()).toEqual(["artifact", "at", "op", "seq", "version"]);
        expectArtifactShape(version.artifact);
      }

      // Page by page with limit=1: the same entries, each once.
      const paged: unknown[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 10; i++) {
        const query: string = cursor === null ? "?limit=1" : `?limit=1&cursor=${encodeURIComponent(cursor)}`;
        const page = await call("GET", `${path}/versions${query}`);
        expect(page.status).toBe(200);
        paged.push(...page.json.versions);
        cursor = page.json.nextCursor;
        if (cursor === null) break;
      }
      expect(paged).toEqual(all.json.versions);

      // A cursor belongs to one artifact's list; bad limits and cursors are 400; unknowns 404.
      const first = await call("GET", `${path}/versions?limit=1`);
      const otherList = `/v1/threads/${threadId}/artifacts/${b.id}/versions`;
      expectProblem(
        await call("GET", `${otherList}?cursor=${encodeURIComponent(first.json.nextCursor)}`),
        400,
        "invalid_request",
      );
      expectProblem(
        await call("GET", `/v1/threads?cursor=${encodeURIComponent(first.json.nextCursor)}`),
        400,
        "invalid_request",
      );
      for (const query of ["?limit=0", "?limit=201", "?cursor=abc", "?limit=x"]) {
        expectProblem(await call("GET", `${path}/versions${query}`), 400, "invalid_request");
      }
      expect((await call("GET", `${path}/versions?limit=200`)).status).toBe(200);
      expectProblem(
        await call("GET", `/v1/threads/${threadId}/artifacts/00000000-0000-7000-8000-000000000000/versions`),
        404,
        "artifact_not_found",
      );
      expectProblem(
        await call("GET", `/v1/threads/${uniqueThreadId("versions-none")}/artifacts/${a.id}/versions`),
        404,
        "thread_not_found",
      );
    });

    it("POST /fork makes a new thread of the source's artifacts at a seq, with forkedFrom; they share nothing after", async () => {
      const source = uniqueThreadId("fork-src");
      const a = (await create(source, { artifactType: "plan", identityKey: "main", payload: { v: 1 } })).json.artifact;
      const b = (await create(source, { artifactType: "note", payload: "b" })).json.artifact;
      const atTwo = (await call("GET", `/v1/threads/${source}`)).json.thread;
      await call("PATCH", `/v1/threads/${source}/artifacts/${a.id}`, { payload: { v: 2 } });
      await create(source, { artifactType: "note", payload: "c" });

      // At the head by default.
      const head = uniqueThreadId("fork-head");
      const forked = await call("POST", `/v1/threads/${source}/fork`, { threadId: head });
      expect(forked.status).toBe(201);
      expect(forked.headers.get("location")).toBe(`/v1/threads/${head}`);
      expect(forked.json.thread.forkedFrom).toEqual({ threadId: source, seq: 4 });
      expect(forked.json.thread.rolloutSeq).toBe(3);
      const sourceNow = (await call("GET", `/v1/threads/${source}`)).json.thread;
      // Same ids, identity keys, payloads and versions; the fork's own thread id and seqs.
      const strip = (x: any) => ({
        id: x.id,
        artifactType: x.artifactType,
        identityKey: x.identityKey,
        payload: x.payload,
        version: x.version,
      });
      expect(forked.json.thread.artifacts.map(strip)).toEqual(sourceNow.artifacts.map(strip));
      expect(forked.json.thread.artifacts.map((x: any) => [x.threadId, x.seq])).toEqual([[head, 1], [head, 2], [
        head,
        3,
      ]]);
      const read = await call("GET", `/v1/threads/${head}`);
      expect(read.json.thread).toEqual(forked.json.thread);
      // A stream of the fork sees ordinary add events.
      const events = await ctx.readEvents(head, 3);
      expect(events.map((e) => [e.seq, e.op])).toEqual([[1, "add"], [2, "add"], [3, "add"]]);

      // At a seq: the source as it was.
      const past = uniqueThreadId("fork-past");
      const atSeq = await call("POST", `/v1/threads/${source}/fork`, { threadId: past, atSeq: 2 });
      expect(atSeq.status).toBe(201);
      expect(atSeq.json.thread.forkedFrom).toEqual({ threadId: source, seq: 2 });
      expect(atSeq.json.thread.artifacts.map(strip)).toEqual(atTwo.artifacts.map(strip));

      // Identity keys came along: the same identity is idempotent on the fork, and writes stay apart.
      const again = await create(past, { artifactType: "plan", identityKey: "main", payload: { v: 1 } }, 200);
      expect(again.json.artifact.id).toBe(a.id);
      await create(past, { artifactType: "note", payload: "only in the fork" });
      expect((await call("GET", `/v1/threads/${source}`)).json.thread.rolloutSeq).toBe(4);
      const listed = await call("GET", "/v1/threads?limit=200");
      expect(listed.json.threads.find((t: any) => t.id === past)?.forkedFrom).toEqual({ threadId: source, seq: 2 });
      expect(listed.json.threads.find((t: any) => t.id === source)).not.toHaveProperty("forkedFrom");
      expect((await call("GET", `/v1/threads/${past}?atSeq=1`)).json.thread.forkedFrom).toEqual({
        threadId: source,
        seq: 2,
      });
      const versions = await call("GET", `/v1/threads/${past}/artifacts/${b.id}/versions`);
      expect(versions.json.versions.map((v: any) => [v.version, v.seq, v.op])).toEqual([[1, 2, "add"]]);
    });

    it("refuses a fork onto an existing thread (409), of an unknown source or seq (404), and bad bodies (400)", async () => {
      const source = uniqueThreadId("fork-bad");
      await create(source, { artifactType: "n", payload: 1 });
      const taken = uniqueThreadId("fork-taken");
      await create(taken, { artifactType: "n", payload: 1 });
      expectProblem(await call("POST", `/v1/threads/${source}/fork`, { threadId: taken }), 409, "thread_exists");
      expectProblem(await call("POST", `/v1/threads/${source}/fork`, { threadId: source }), 409, "thread_exists");
      expect((await call("GET", `/v1/threads/${taken}`)).json.thread.rolloutSeq).toBe(1);
      const fresh = uniqueThreadId("fork-fresh");
      expectProblem(
        await call("POST", `/v1/threads/${uniqueThreadId("nope")}/fork`, { threadId: fresh }),
        404,
        "thread_not_found",
      );
      expectProblem(
        await call("POST", `/v1/threads/${source}/fork`, { threadId: fresh, atSeq: 2 }),
        404,
        "thread_not_found",
      );
      for (
        const body of [{}, { threadId: "-bad" }, { threadId: fresh, atSeq: 0 }, { threadId: fresh, atSeq: 1.5 }, {
          threadId: fresh,
          extra: 1,
        }]
      ) {
        expectProblem(await call("POST", `/v1/threads/${source}/fork`, body), 400, "invalid_request");
      }
      expectProblem(await call("GET", `/v1/threads/${fresh}`), 404, "thread_not_found");
    });
  });
}
