import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { WritesFirst } from "../../src/webhooks/writes-first.ts";

/** Requests held open until released, counted by the gate as the server counts them. */
function requests(gate: WritesFirst, count: number) {
  const ends: (() => void)[] = [];
  const served = Array.from(
    { length: count },
    () => gate.track(() => new Promise<void>((resolve) => ends.push(resolve))),
  );
  return {
    end: async () => {
      for (const end of ends.splice(0)) end();
      await Promise.all(served);
    },
  };
}

describe("writes first: deliveries yield to requests while the server is busy", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("lets deliveries go at once while it is not busy", async () => {
    const gate = new WritesFirst({ busyAbove: 2, floorMs: 20 });
    const open = requests(gate, 2);
    expect(gate.busy).toBe(false);
    let passed = 0;
    await Promise.all([gate.pass(), gate.pass(), gate.pass()].map((p) => p.then(() => passed++)));
    expect(passed).toBe(3);
    await open.end();
  });

  it("while busy, passes one delivery per floor interval; once the requests are answered and it cooled, all of them", async () => {
    const gate = new WritesFirst({ busyAbove: 2, floorMs: 20, coolMs: 100 });
    const open = requests(gate, 3);
    expect(gate.busy).toBe(true);
    const passed: number[] = [];
    for (let i = 0; i < 20; i++) void gate.pass().then(() => passed.push(i));
    await vi.advanceTimersByTimeAsync(19);
    expect(passed).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(passed).toEqual([0]);
    await vi.advanceTimersByTimeAsync(20);
    expect(passed).toEqual([0, 1]);
    // The requests are answered (at 40 ms): still busy until 100 ms, one per floor interval...
    await open.end();
    await vi.advanceTimersByTimeAsync(40);
    expect(passed).toEqual([0, 1, 2, 3]);
    expect(gate.busy).toBe(true);
    // ...then cool: the rest go at once, in order.
    await vi.advanceTimersByTimeAsync(20);
    expect(passed).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(gate.busy).toBe(false);
  });

  it("a gap between a loaded server's requests does not open the gate", async () => {
    const gate = new WritesFirst({ busyAbove: 2, floorMs: 20, coolMs: 100 });
    const passed: number[] = [];
    const first = requests(gate, 3);
    for (let i = 0; i < 10; i++) void gate.pass().then(() => passed.push(i));
    // Every request answered, the next ones a few ms later, as clients of a loaded server do.
    await first.end();
    await vi.advanceTimersByTimeAsync(5);
    const second = requests(gate, 3);
    await vi.advanceTimersByTimeAsync(15);
    // Only the floor's one, not all ten.
    expect(passed).toEqual([0]);
    await second.end();
  });

  it("keeps the order of waiting deliveries: one that comes when it is no longer busy waits behind them", async () => {
    const gate = new WritesFirst({ busyAbove: 0, floorMs: 1000, coolMs: 0 });
    const open = requests(gate, 1);
    const passed: string[] = [];
    void gate.pass().then(() => passed.push("first"));
    await open.end();
    void gate.pass().then(() => passed.push("second"));
    await vi.advanceTimersByTimeAsync(0);
    expect(passed).toEqual(["first", "second"]);
  });
});
