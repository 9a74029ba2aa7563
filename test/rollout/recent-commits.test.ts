/**
 * The commits a process created lately (compaction's tail from memory): a consecutive run
 * per thread, broken by a gap; let go once compacted; and a byte budget over every thread
 * that drops the least recently written thread first, then the current thread's oldest.
 */
import { describe, expect, it } from "vitest";
import type { Commit } from "../../src/model/patch.ts";
import { RecentCommits } from "../../src/rollout/recent-commits.ts";

/** A commit of seqs first..last (its patches do not matter here). */
const commit = (firstSeq: number, lastSeq = firstSeq): Commit =>
  ({ firstSeq, lastSeq, patches: [] }) as unknown as Commit;
const seqs = (recent: RecentCommits, thread: string) => recent.commits(thread).map((c) => [c.firstSeq, c.lastSeq]);

describe("recent commits", () => {
  it("hold a consecutive run per thread; a gap starts the run afresh", () => {
    const recent = new RecentCommits(1000);
    recent.add("a", commit(1, 2), 10);
    recent.add("a", commit(3), 10);
    recent.add("b", commit(1), 10);
    expect(seqs(recent, "a")).toEqual([[1, 2], [3, 3]]);
    recent.add("a", commit(5), 10);
    expect(seqs(recent, "a")).toEqual([[5, 5]]);
    expect(seqs(recent, "b")).toEqual([[1, 1]]);
    expect(recent.bytes).toBe(20);
    expect(recent.commits("c")).toEqual([]);
  });

  it("let go of what compaction covered", () => {
    const recent = new RecentCommits(1000);
    for (const seq of [1, 2, 3, 4]) recent.add("a", commit(seq), 10);
    recent.releaseThrough("a", 2);
    expect(seqs(recent, "a")).toEqual([[3, 3], [4, 4]]);
    expect(recent.bytes).toBe(20);
    recent.releaseThrough("a", 4);
    expect(recent.commits("a")).toEqual([]);
    expect(recent.bytes).toBe(0);
    // A new run after it starts from nothing held.
    recent.add("a", commit(5), 10);
    expect(seqs(recent, "a")).toEqual([[5, 5]]);
  });

  it("stay within their budget: at the budget all is kept, one byte over drops the least recently written thread", () => {
    const recent = new RecentCommits(30);
    recent.add("a", commit(1), 10);
    recent.add("b", commit(1), 10);
    recent.add("a", commit(2), 10);
    expect(recent.bytes).toBe(30);
    expect(seqs(recent, "b")).toEqual([[1, 1]]);
    recent.add("c", commit(1), 1);
    // b was written least recently (a since): it goes, whole.
    expect(recent.commits("b")).toEqual([]);
    expect(seqs(recent, "a")).toEqual([[1, 1], [2, 2]]);
    expect(recent.bytes).toBe(21);
  });

  it("a thread alone over the budget keeps its newest commits; one commit over it is not held", () => {
    const recent = new RecentCommits(25);
    recent.add("a", commit(1), 10);
    recent.add("a", commit(2), 10);
    recent.add("a", commit(3), 10);
    expect(seqs(recent, "a")).toEqual([[2, 2], [3, 3]]);
    recent.add("a", commit(4), 26);
    expect(recent.commits("a")).toEqual([]);
    expect(recent.bytes).toBe(0);
  });
});
