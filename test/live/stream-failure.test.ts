/**
 * The log failing under an open stream (the rollout store erroring while the cache
 * lacks the events): the stream ends like a lifetime end, with nothing internal sent to
 * the client and one line logged, so the client's reconnect-and-resume takes over.
 */
import { Hono } from "hono";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FeedHub } from "../../src/live/feed.ts";
import { InProcessNotifier } from "../../src/live/notifier.ts";
import { streamThreadEvents } from "../../src/live/sse.ts";

afterEach(() => vi.restoreAllMocks());

describe("an event stream whose log fails", () => {
  it("ends cleanly after the retry hint: no error event, no internals, one log line", async () => {
    const warned: string[] = [];
    vi.spyOn(console, "warn").mockImplementation((...args: unknown[]) => void warned.push(args.join(" ")));
    vi.spyOn(console, "error").mockImplementation((...args: unknown[]) => void warned.push(`error: ${args.join(" ")}`));
    const reader = {
      readEvents: async () => {
        const error = new Error("S3 GetObject 500 from https://bucket.internal/tenants/t/threads/x/patches/1.json\nmore detail");
        error.name = "S3Error";
        throw error;
      },
      // Behind the head, so the stream must read the log itself (the feed buffer cannot serve it).
      head: async () => 5,
    };
    const hub = new FeedHub({ reader, notifier: new InProcessNotifier(), pollMs: 1000 });
    const app = new Hono().get("/events", (c) =>
      streamThreadEvents(c, { tenant: "t", threadId: "x", resumeAfter: 0 }, { hub, reader, options: { retryMs: 2000, pingMs: 15_000, maxLifetimeMs: 5_000 } }),
    );
    const response = await app.request("/events");
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("retry: 2000\n\n");
    expect(warned).toEqual(["event stream of x ended: S3Error: S3 GetObject 500 from https://bucket.internal/tenants/t/threads/x/patches/1.json"]);
    expect(hub.size).toBe(0);
  });
});
