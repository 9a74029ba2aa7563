import { describe, expect, it } from "vitest";
import { advance, backlogOf, caughtUp, MARK_GRAIN_MS, MAX_MARKS, newLane, noteSeq } from "../../src/webhooks/lanes.ts";

/** A lane whose cursor has been read at `delivered`. */
function laneAt(delivered: number, now = 0) {
  const lane = newLane("t", now);
  lane.delivered = lane.durable = delivered;
  return lane;
}

describe("a lane's backlog and the age of its oldest undelivered event", () => {
  it("counts what is known past the cursor, aged from when the first of it became known", () => {
    const lane = laneAt(0);
    expect(backlogOf(lane)).toBeNull();
    noteSeq(lane, 3, 1_000, Infinity);
    noteSeq(lane, 5, 5_000, Infinity);
    expect(backlogOf(lane)).toEqual({ events: 5, since: 1_000 });
    // Acknowledging past the first mark ages the rest from the second.
    advance(lane, 3);
    expect(backlogOf(lane)).toEqual({ events: 2, since: 5_000 });
    advance(lane, 5);
    expect(backlogOf(lane)).toBeNull();
  });

  it("ignores a seq it already knows (a hint after a sweep, or out of order)", () => {
    const lane = laneAt(0);
    noteSeq(lane, 4, 1_000, Infinity);
    noteSeq(lane, 2, 9_000, Infinity);
    noteSeq(lane, 4, 9_000, Infinity);
    expect(lane.known).toBe(4);
    expect(lane.marks).toEqual([[4, 1_000]]);
  });

  it("lets seqs learned within the grain share a mark (the earlier time), and starts one just past it", () => {
    const lane = laneAt(0);
    noteSeq(lane, 1, 1_000, Infinity);
    noteSeq(lane, 2, 1_000 + MARK_GRAIN_MS - 1, Infinity);
    expect(lane.marks).toEqual([[2, 1_000]]);
    noteSeq(lane, 3, 1_000 + MARK_GRAIN_MS, Infinity);
    expect(lane.marks).toEqual([[2, 1_000], [3, 1_000 + MARK_GRAIN_MS]]);
  });

  it("holds at most MAX_MARKS marks: past them the newest takes the new seqs, the oldest stay exact", () => {
    const lane = laneAt(0);
    for (let i = 1; i <= MAX_MARKS; i++) noteSeq(lane, i, i * MARK_GRAIN_MS, Infinity);
    expect(lane.marks).toHaveLength(MAX_MARKS);
    noteSeq(lane, MAX_MARKS + 1, (MAX_MARKS + 5) * MARK_GRAIN_MS, Infinity);
    expect(lane.marks).toHaveLength(MAX_MARKS);
    expect(lane.marks[0]).toEqual([1, MARK_GRAIN_MS]);
    // The new seq is aged from the newest mark's time: older than it is, never younger.
    expect(lane.marks.at(-1)).toEqual([MAX_MARKS + 1, MAX_MARKS * MARK_GRAIN_MS]);
    advance(lane, MAX_MARKS);
    expect(backlogOf(lane)).toEqual({ events: 1, since: MAX_MARKS * MARK_GRAIN_MS });
  });

  it("keeps the earliest change time it was told of, until caught up", () => {
    const lane = laneAt(0);
    noteSeq(lane, 1, 1_000, 500);
    noteSeq(lane, 2, 2_000, 1_500);
    expect(lane.behindFrom).toBe(500);
    caughtUp(lane, 3_000);
    expect(lane.behindFrom).toBe(Infinity);
    expect(lane.marks).toEqual([]);
    expect(lane.known).toBe(2);
    expect(lane.idleSince).toBe(3_000);
  });
});
