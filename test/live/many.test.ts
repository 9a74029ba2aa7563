/**
 * Many-threads streams share the process's feeds: one feed per thread, however many
 * streams (single- or many-thread) follow it, released with the last of them.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createTestApp } from "../support/in-process.ts";
import { waitFor } from "../support/wait.ts";

const opened: Array<ReturnType<typeof createTestApp>> = [];
afterEach(async () => {
  for (const t of opened.splice(0)) await t.close();
});

async function open(t: ReturnType<typeof createTestApp>, path: string) {
  const controller = new AbortController();
  const response = await t.app.request(path, { signal: controller.signal });
  expect(response.status).toBe(200);
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  // The stream is set up once its first bytes (retry:) arrive.
  await reader.read();
  return async () => {
    controller.abort();
    await reader.cancel().catch(() => {});
  };
}

describe("many-threads streams on the process's feeds", () => {
  it("one feed per thread across every stream that includes it, released with the last", async () => {
    const t = createTestApp();
    opened.push(t);
    const closeFirst = await open(t, "/v1/events?threads=a,b");
    const closeSecond = await open(t, "/v1/events?threads=b,c");
    const closeSingle = await open(t, "/v1/threads/a/events");
    expect(t.feeds.size).toBe(3);
    await closeFirst();
    await closeSingle();
    // b and c still followed by the second stream.
    await waitFor("a released", () => t.feeds.size === 2);
    await closeSecond();
    await waitFor("every feed released", () => t.feeds.size === 0);
  });
});
