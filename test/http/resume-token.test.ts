import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ResumeTokenCodec, tagOf } from "../../src/http/resume-token.ts";
import { parseThreadSet } from "../../src/http/thread-set.ts";
import { ProblemError } from "../../src/model/errors.ts";

const codec = new ResumeTokenCodec("test-secret");

async function rejects(promise: Promise<unknown>): Promise<void> {
  await expect(promise).rejects.toSatisfy((e: unknown) => e instanceof ProblemError && e.status === 400);
}

describe("resume tokens", () => {
  it("property: any set of positions round-trips, and any one changed character is refused", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,20}$/), { minLength: 1, maxLength: 100 }),
        fc.array(fc.maxSafeNat(), { minLength: 100, maxLength: 100 }),
        fc.nat(),
        async (threads, seqs, at) => {
          const positions = threads.map((t, i) => [tagOf(t), seqs[i] as number] as [string, number]);
          const token = await codec.encode("tenant-a", positions);
          expect(token.length).toBeLessThan(8192);
          const decoded = await codec.decode("tenant-a", token);
          for (const [i, t] of threads.entries()) expect(decoded.get(tagOf(t))).toBe(seqs[i]);
          // Another tenant, or one character changed anywhere: 400.
          await rejects(codec.decode("tenant-b", token));
          const i = at % token.length;
          const swapped = token[i] === "A" ? "B" : token[i] === "." ? "A" : "A";
          if (swapped !== token[i]) {
            await rejects(codec.decode("tenant-a", token.slice(0, i) + swapped + token.slice(i + 1)));
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("a token signed with another secret is refused", async () => {
    const token = await new ResumeTokenCodec("other-secret").encode("t", [[tagOf("a"), 1]]);
    await rejects(codec.decode("t", token));
  });
});

describe("thread lists (threads=)", () => {
  it("reads id:seq only when what follows the last colon is a seq", () => {
    expect(parseThreadSet("a,b:12,c")).toEqual([
      { threadId: "a", after: 0 },
      { threadId: "b", after: 12 },
      { threadId: "c", after: 0 },
    ]);
    expect(parseThreadSet("x:12:0,y:z")).toEqual([{ threadId: "x:12", after: 0 }, { threadId: "y:z", after: 0 }]);
    expect(parseThreadSet("x:12")).toEqual([{ threadId: "x", after: 12 }]);
  });

  it("refuses empty entries, bad ids, repeats and more than 100", () => {
    for (const bad of [undefined, "", " ", "a,", ",a", "a,,b", ":5", "-a", "a,a", "a:1,a:2", "a:01x!"]) {
      expect(() => parseThreadSet(bad), String(bad)).toThrow(ProblemError);
    }
    const ids = (n: number) => Array.from({ length: n }, (_, i) => `t${i}`).join(",");
    expect(parseThreadSet(ids(100))).toHaveLength(100);
    expect(() => parseThreadSet(ids(101))).toThrow(/at most 100/);
  });
});
