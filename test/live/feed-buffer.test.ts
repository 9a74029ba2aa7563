import { afterEach, describe, expect, it } from "vitest";
import { FeedHub } from "../../src/live/feed.ts";
import { InProcessNotifier } from "../../src/live/notifier.ts";
import type { LogEvent } from "../../src/model/patch.ts";
import { waitFor } from "../support/wait.ts";

/** A thread's log as a store would answer it; ten events of 1,000 characters each are appended once the feed follows it. */
const events: LogEvent[] = [];
const reader = {
  readEvents: (_tenant: string, _thread: string, after: number, limit: number) =>
    Promise.resolve(events.filter((e) => e.seq > after).slice(0, limit)),
  head: () => Promise.resolve(events.length),
};

describe("a thread feed's buffer", () => {
  const releases: (() => void)[] = [];
  afterEach(() => {
    for (const release of releases.splice(0)) release();
    events.length = 0;
  });

  /** A feed at the head of an empty thread, then ten events appended and read. */
  async function feedOf(bufferChars: number) {
    const hub = new FeedHub({ reader, notifier: new InProcessNotifier(), pollMs: 60_000, bufferChars });
    const { feed, release } = hub.acquire("t", "thread");
    releases.push(release);
    await waitFor("the feed following the thread", () => feed.head === 0);
    for (let seq = 1; seq <= 10; seq++) events.push({ seq, data: "x".repeat(1000) });
    feed.refresh();
    await waitFor("the feed at the new head", () => feed.head === 10);
    return feed;
  }

  it("keeps the newest events within its size in characters: a stream further behind reads the log", async () => {
    const feed = await feedOf(3500);
    expect(feed.fromBuffer(9)?.map((e) => e.seq)).toEqual([10]);
    expect(feed.fromBuffer(7)?.map((e) => e.seq)).toEqual([8, 9, 10]);
    expect(feed.fromBuffer(6)).toBeNull();
  });

  it("always keeps the newest event, however large", async () => {
    const feed = await feedOf(10);
    expect(feed.fromBuffer(9)?.map((e) => e.seq)).toEqual([10]);
    expect(feed.fromBuffer(8)).toBeNull();
  });
});
