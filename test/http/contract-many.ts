// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
import { EventSource } from "eventsource";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../support/wait.ts";
import type { ContractContext, HttpTarget, StreamedEvent } from "./contract.ts";
import { expectProblem, uniqueThreadId } from "./contract.ts";

/** Each thread's seqs, in the order they arrived. */
function seqsByThread(events: readonly StreamedEvent[]): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const event of events) (out[event.threadId] ??= []).push(event.seq);
  return out;
}

const manyPath = (entries: readonly string[]) => `/v1/events?threads=${entries.map(encodeURIComponent).join(",")}`;

/** API.md "Many threads on one stream": part of the contract every target runs. */
export function describeManyThreadStreams(ctx: ContractContext): void {
  const { call, create } = ctx;

  describe("many threads on one stream (GET /v1/events)", () => {
    it("follows several threads, each in seq order from its start, waiting for one that does not exist yet", async () => {
      const [a, b, c] = ["a", "b", "c"].map((label) => uniqueThreadId(`many-${label}`)) as [string, string, string];
      for (const thread of [a, a, b, b]) await create(thread, { artifactType: "n", payload: thread });
      const reading = ctx.readSse(manyPath([a, `${b}:1`, c]), 5);
      await create(c, { artifactType: "n", payload: "c1" });
      await create(a, { artifactType: "n", payload: "a3" });
      const events = await reading;
      expect(seqsByThread(events)).toEqual({ [a]: [1, 2, 3], [b]: [2], [c]: [1] });
      for (const event of events) {
        expect(event.artifact.threadId).toBe(event.threadId);
        // The id is a resume token for the whole set, not a seq.
        expect(event.id).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
      }
    });

    it("every event's id resumes every thread exactly after what was delivered; the token wins over :seq", async () => {
      const threads = ["x", "y", "z"].map((label) => uniqueThreadId(`resume-${label}`));
      for (const thread of threads) {
        for (let i = 0; i < 2; i++) await create(thread, { artifactType: "n", payload: i });
      }
      const all = await ctx.readSse(manyPath(threads), 6);
      expect(Object.values(seqsByThread(all)).map((s) => s.length)).toEqual([2, 2, 2]);
      for (const k of [0, 2, 4]) {
        const delivered = all.slice(0, k + 1);
        const position = (thread: string) =>
          Math.max(0, ...delivered.filter((e) => e.threadId === thread).map((e) => e.seq));
        const expected = threads.flatMap((thread) =>
          [1, 2].filter((seq) => seq > position(thread)).map((seq) => `${thread}@${seq}`)
        );
        // `:0` on every entry: the token's positions win over it.
        const rest = await ctx.readSse(manyPath(threads.map((t) => `${t}:0`)), expected.length, {
          "last-event-id": (all[k] as StreamedEvent).id,
        });
        expect(rest.map((e) => `${e.threadId}@${e.seq}`).sort()).toEqual(expected.sort());
      }
      // After the last id nothing is replayed; a thread added to the list starts from its own start point.
      const added = uniqueThreadId("resume-added");
      await create(added, { artifactType: "n", payload: "new" });
      const last = all[5] as StreamedEvent;
      const reading = ctx.readSse(manyPath([...threads, added]), 2, { "last-event-id": last.id });
      await create(threads[0] as string, { artifactType: "n", payload: "later" });
      const tail = await reading;
      expect(tail.map((e) => `${e.threadId}@${e.seq}`).sort()).toEqual([`${added}@1`, `${threads[0]}@3`].sort());
    });

    it("takes 100 threads on one stream with resume tokens well under 8 KiB; 101 is a 400", async () => {
      const threads = Array.from({ length: 100 }, (_, i) => uniqueThreadId(`hundred-${String(i).padStart(3, "0")}`));
      for (let i = 0; i < threads.length; i += 10) {
        await Promise.all(threads.slice(i, i + 10).map((t) => create(t, { artifactType: "n", payload: t })));
      }
      const events = await ctx.readSse(manyPath(threads), 100);
      expect(Object.keys(seqsByThread(events)).sort()).toEqual([...threads].sort());
      expect(events.every((e) => e.seq === 1)).toBe(true);
      const longest = Math.max(...events.map((e) => e.id.length));
      expect(longest).toBeLessThan(2048);
      console.log(`resume token for 100 threads: ${longest} bytes`);
      const tooMany = await call("GET", manyPath([...threads, uniqueThreadId("one-more")]));
      expectProblem(tooMany, 400, "invalid_request");
    });

    it("refuses a bad thread list or resume token with 400, before streaming anything", async () => {
      const thread = uniqueThreadId("bad-set");
      await create(thread, { artifactType: "n", payload: 1 });
      for (
        const query of [
          "",
          "?threads=",
          `?threads=${thread},,x`,
          "?threads=-bad",
          `?threads=${thread},${thread}:2`,
          `?threads=${"x".repeat(129)}`,
        ]
      ) {
        expectProblem(await call("GET", `/v1/events${query}`), 400, "invalid_request");
      }
      const [event] = await ctx.readSse(manyPath([thread]), 1);
      const token = (event as StreamedEvent).id;
      const [payload, mac] = token.split(".") as [string, string];
      const flip = (text: string, at: number) =>
        text.slice(0, at) + (text[at] === "A" ? "B" : "A") + text.slice(at + 1);
      for (const bad of [flip(payload, 3), `${payload}.${flip(mac, 2)}`, payload, `${token}.x`, "5", "%%%"]) {
        expectProblem(
          await call("GET", manyPath([thread]), undefined, { "last-event-id": bad }),
          400,
          "invalid_request",
        );
      }
    });

    describe("tenants", () => {
      let tenants: HttpTarget | undefined;
      const TOKEN_A = "many-tenant-a-token";
      const TOKEN_B = "many-tenant-b-token";
      beforeAll(async () => {
        tenants = await ctx.makeTarget({ AUTH_TOKENS: `${TOKEN_A}:many-a,${TOKEN_B}:many-b` });
      });
      afterAll(async () => {
        await tenants?.close();
      });

      it("a stream sees only its tenant's threads, and a token minted for another tenant is a 400", async () => {
        const target = tenants as HttpTarget;
        const as = (token: string) => ({ authorization: `Bearer ${token}` });
        const thread = uniqueThreadId("shared-name");
        const post = (token: string, payload: unknown) =>
          target.fetch(`/v1/threads/${thread}/artifacts`, {
            method: "POST",
            headers: { ...as(token), "content-type": "application/json" },
            body: JSON.stringify({ artifactType: "n", payload }),
          });
        expect((await post(TOKEN_A, "a1")).status).toBe(201);
        expect((await post(TOKEN_B, "b1")).status).toBe(201);
        expect((await post(TOKEN_B, "b2")).status).toBe(201);
        const fromA = await ctx.readSse(manyPath([thread]), 1, as(TOKEN_A), target);
        expect(fromA.map((e) => e.artifact.payload)).toEqual(["a1"]);
        const fromB = await ctx.readSse(manyPath([thread]), 2, as(TOKEN_B), target);
        expect(fromB.map((e) => e.artifact.payload)).toEqual(["b1", "b2"]);
        // B's token is no resume point for A, even for a thread of the same name.
        const foreign = await target.fetch(manyPath([thread]), {
          headers: { ...as(TOKEN_A), "last-event-id": (fromB[0] as StreamedEvent).id },
        });
        expect(foreign.status).toBe(400);
        await foreign.body?.cancel();
        // No token: 401; the query token works, as on the single-thread stream.
        const anonymous = await target.fetch(manyPath([thread]), { headers: { authorization: "" } });
        expect(anonymous.status).toBe(401);
        await anonymous.body?.cancel();
        const byQuery = await ctx.readSse(
          `${manyPath([thread])}&access_token=${TOKEN_A}`,
          1,
          { authorization: "" },
          target,
        );
        expect(byQuery.map((e) => e.artifact.payload)).toEqual(["a1"]);
      });
    });

    it("an EventSource (the eventsource package) resumes every thread across a server restart, nothing lost or doubled", async () => {
      const threads = ["p", "q"].map((label) => uniqueThreadId(`restart-${label}`)) as [string, string];
      await create(threads[0], { artifactType: "n", payload: "p1" });
      const received: StreamedEvent[] = [];
      const lastEventIds: string[] = [];
      // The URL's origin is a placeholder: every request goes through the target's fetch,
      // which after a restart reaches the new server.
      const source = new EventSource(`http://contract.invalid${manyPath(threads)}`, {
        fetch: (input, init) => {
          const url = new URL(String(input));
          lastEventIds.push(new Headers(init?.headers as HeadersInit).get("last-event-id") ?? "");
          return ctx.target().fetch(`${url.pathname}${url.search}`, init as RequestInit) as any;
        },
      });
      source.addEventListener("artifact-updated", (message) => {
        received.push({ id: message.lastEventId, ...JSON.parse(message.data) });
      });
      try {
        await create(threads[1], { artifactType: "n", payload: "q1" });
        await create(threads[0], { artifactType: "n", payload: "p2" });
        await waitFor("3 events before the restart", () => received.length === 3);
        await ctx.restart();
        await create(threads[1], { artifactType: "n", payload: "q2" });
        await create(threads[0], { artifactType: "n", payload: "p3" });
        await waitFor("5 events after the restart", () => received.length >= 5);
        expect(seqsByThread(received)).toEqual({ [threads[0]]: [1, 2, 3], [threads[1]]: [1, 2] });
        // It reconnected with the token of the last event it had.
        expect(lastEventIds[0]).toBe("");
        expect(lastEventIds.slice(1)).toContain((received[2] as StreamedEvent).id);
      } finally {
        source.close();
      }
    });
  });
}
