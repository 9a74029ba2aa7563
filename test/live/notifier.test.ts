import { afterEach, describe, expect, it } from "vitest";
import { BroadcastChannelNotifier, InProcessNotifier, type Notifier } from "../../src/live/notifier.ts";

const open: Notifier[] = [];
afterEach(() => {
  for (const notifier of open.splice(0)) notifier.close();
});

function hints(notifier: Notifier, tenant: string, threadId: string) {
  const seen: number[] = [];
  let waiter: (() => void) | undefined;
  const unsubscribe = notifier.subscribe(tenant, threadId, () => {
    seen.push(seen.length + 1);
    waiter?.();
  });
  return {
    seen,
    unsubscribe,
    next: () => new Promise<void>((resolve) => (waiter = resolve)),
  };
}

describe("InProcessNotifier", () => {
  it("wakes only the subscribers of that tenant's thread, until they unsubscribe", () => {
    const notifier = new InProcessNotifier();
    const a = hints(notifier, "t1", "thread");
    const otherTenant = hints(notifier, "t2", "thread");
    const otherThread = hints(notifier, "t1", "other");
    notifier.notify("t1", "thread", 1);
    expect([a.seen.length, otherTenant.seen.length, otherThread.seen.length]).toEqual([1, 0, 0]);
    a.unsubscribe();
    notifier.notify("t1", "thread", 2);
    expect(a.seen.length).toBe(1);
  });
});

describe("BroadcastChannelNotifier", () => {
  it("carries hints between notifiers on one channel (isolates of a deployment) and to local subscribers", async () => {
    const name = `hints-${Math.random().toString(36).slice(2)}`;
    const writer = new BroadcastChannelNotifier(name);
    const reader = new BroadcastChannelNotifier(name);
    open.push(writer, reader);
    const remote = hints(reader, "acme", "t-1");
    const local = hints(writer, "acme", "t-1");
    const otherTenant = hints(reader, "globex", "t-1");
    const arrived = remote.next();
    writer.notify("acme", "t-1", 7);
    // Local subscribers hear at once (a channel does not echo to its sender)...
    expect(local.seen.length).toBe(1);
    // ...and the other isolate's subscriber through the channel.
    await arrived;
    expect(remote.seen.length).toBe(1);
    expect(otherTenant.seen.length).toBe(0);
  });
});
