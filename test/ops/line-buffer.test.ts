/**
 * The Node server's stdout buffer for log lines (src/runtime/line-buffer.ts): lines go out
 * together once the window after the first of them ends, at once when the bytes pending
 * reach the bound, and on a flush; never a line twice, never an empty write. Driven by a
 * hand-run timer (no sleeps).
 */
import { describe, expect, it } from "vitest";
import { lineBuffer } from "../../src/runtime/line-buffer.ts";

function harness(maxBytes = 1024) {
  const writes: string[] = [];
  const timers: { run: () => void; ms: number; cancelled: boolean }[] = [];
  const lines = lineBuffer({
    write: (chunk) => writes.push(chunk),
    maxDelayMs: 10,
    maxBytes,
    later: (run, ms) => {
      const timer = { run, ms, cancelled: false };
      timers.push(timer);
      return timer;
    },
    cancel: (timer) => {
      timer.cancelled = true;
    },
  });
  /** Fires the timers that are due (all those set and not cancelled). */
  const elapse = () => {
    for (const timer of timers.splice(0)) if (!timer.cancelled) timer.run();
  };
  return { lines, writes, timers, elapse };
}

describe("the log line buffer", () => {
  it("writes the lines of one window in one write, when the window after the first ends", () => {
    const { lines, writes, timers, elapse } = harness();
    lines.add("a");
    lines.add("b");
    lines.add("c");
    expect(writes).toEqual([]);
    expect(timers.map((t) => t.ms)).toEqual([10]);
    elapse();
    expect(writes).toEqual(["a\nb\nc\n"]);
    // The next line opens a new window.
    lines.add("d");
    expect(timers.filter((t) => !t.cancelled)).toHaveLength(1);
    elapse();
    expect(writes).toEqual(["a\nb\nc\n", "d\n"]);
  });

  it("writes at once when the pending bytes reach the bound (limit), not a byte before (limit - 1)", () => {
    // "xxxxxxxx\n" is 9: two lines are 18 pending.
    const under = harness(19);
    under.lines.add("xxxxxxxx");
    under.lines.add("xxxxxxxx");
    expect(under.writes).toEqual([]);
    const at = harness(18);
    at.lines.add("xxxxxxxx");
    at.lines.add("xxxxxxxx");
    expect(at.writes).toEqual(["xxxxxxxx\nxxxxxxxx\n"]);
    // Its window was cancelled: the timer writes nothing more.
    at.elapse();
    expect(at.writes).toHaveLength(1);
  });

  it("flushes what is pending (the process exiting), and a flush with nothing pending writes nothing", () => {
    const { lines, writes, elapse } = harness();
    lines.flush();
    expect(writes).toEqual([]);
    lines.add("last words");
    lines.flush();
    expect(writes).toEqual(["last words\n"]);
    elapse();
    lines.flush();
    expect(writes).toEqual(["last words\n"]);
  });
});
