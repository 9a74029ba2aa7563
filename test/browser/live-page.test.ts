/**
 * The live page at `/` (the typed client's store, src/http/page-app.ts) in a real browser
 * (Debian's Chromium through playwright-core, never a downloaded browser) against a real
 * server process: two pages on one thread; an artifact created through the form in page
 * 1 appears in page 2 without a reload; updates and removals made elsewhere show up live
 * in both; after a reload both pages still show the thread; a create shows at once,
 * marked pending, and a refused one is rolled back with its error. Run with
 * `npm run test:browser` (not part of `npm test`).
 */
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createArtifactsClient } from "../../src/client/index.ts";
import { useCluster } from "../support/cluster.ts";
import type { ServerProcess } from "../support/server-process.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "../support/chromium.ts";

const WAIT = { timeout: 20_000 };

const cluster = useCluster("all");
let server: ServerProcess;
let browser: Browser;

beforeAll(async () => {
  [server, browser] = await Promise.all([
    cluster.start({ DATA_DIR: cluster.tempDir("artifacts-browser-") }),
    chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS }),
  ]);
});

afterAll(async () => {
  await browser?.close();
});

async function openThread(threadId: string): Promise<Page> {
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(String(error)));
  await page.goto(`${server.url}/?thread=${encodeURIComponent(threadId)}`);
  // The EventSource is open before anything is written.
  await page.locator('#status[data-state="live"]').waitFor(WAIT);
  expect(problems).toEqual([]);
  return page;
}

const item = (page: Page, text: string) => page.locator("#artifacts li", { hasText: text });

describe("live page", () => {
  it("an artifact created in one page appears in the other without a reload, and both keep it after a reload", async () => {
    const threadId = `browser-${Date.now().toString(36)}`;
    const [one, two] = [await openThread(threadId), await openThread(threadId)];
    try {
      expect(await one.locator("#thread").inputValue()).toBe(threadId);
      expect(await two.locator("#artifacts li").count()).toBe(0);

      await one.locator('input[name="artifactType"]').fill("plan");
      await one.locator('input[name="identityKey"]').fill("plan:main");
      await one.locator('textarea[name="payload"]').fill('{"text": "made in page one", "markup": "<b>not bold</b>"}');
      await one.getByRole("button", { name: "Create artifact" }).click();

      // Page two never reloaded: the artifact arrives through its event stream.
      await item(two, "made in page one").waitFor(WAIT);
      await item(one, "made in page one").waitFor(WAIT);
      expect(await one.locator("#error").textContent()).toBe("");
      for (const page of [one, two]) {
        expect(await page.locator("#artifacts li").count()).toBe(1);
        expect(await page.locator("#artifacts li strong").textContent()).toBe("plan · plan:main");
        // Payload text is shown as text, never parsed as markup.
        expect(await page.locator("#artifacts li b").count()).toBe(0);
        expect(await page.locator("#artifacts li pre").textContent()).toContain("<b>not bold</b>");
        await page.locator("#seq", { hasText: /^1$/ }).waitFor(WAIT);
      }

      // What the API says is what the pages show.
      const client = createArtifactsClient({ baseUrl: server.url });
      const thread = await client.readThread(threadId);
      expect(thread.artifacts).toHaveLength(1);
      const [artifact] = thread.artifacts;
      expect(await two.locator("#artifacts li").getAttribute("data-id")).toBe(artifact?.id);

      await Promise.all([one.reload(), two.reload()]);
      for (const page of [one, two]) {
        await item(page, "made in page one").waitFor(WAIT);
        await page.locator('#status[data-state="live"]').waitFor(WAIT);
        expect(await page.locator("#artifacts li").count()).toBe(1);
        expect(await page.locator("#seq").textContent()).toBe("1");
      }
    } finally {
      await Promise.all([one.close(), two.close()]);
    }
  });

  it("updates and removals made elsewhere show up live in every open page", async () => {
    const threadId = `browser-upd-${Date.now().toString(36)}`;
    const client = createArtifactsClient({ baseUrl: server.url });
    const { artifact } = await client.createArtifact(threadId, {
      artifactType: "note",
      payload: { text: "version one" },
    });
    const [one, two] = [await openThread(threadId), await openThread(threadId)];
    try {
      for (const page of [one, two]) await item(page, "version one").waitFor(WAIT);

      await client.updateArtifact(threadId, artifact.id, { text: "version two" });
      for (const page of [one, two]) {
        await item(page, "version two").waitFor(WAIT);
        expect(await page.locator("#artifacts li").count()).toBe(1);
        expect(await page.locator("#artifacts li .muted").textContent()).toContain("v2");
      }

      const other = await client.createArtifact(threadId, { artifactType: "note", payload: { text: "stays" } });
      await client.removeArtifact(threadId, artifact.id);
      for (const page of [one, two]) {
        await item(page, "version two").waitFor({ state: "detached", ...WAIT });
        await item(page, "stays").waitFor(WAIT);
        expect(await page.locator("#artifacts li").getAttribute("data-id")).toBe(other.artifact.id);
        await page.locator("#seq", { hasText: /^4$/ }).waitFor(WAIT);
      }
    } finally {
      await Promise.all([one.close(), two.close()]);
    }
  });

  it("a create shows at once, marked pending, until its answer; one the server refuses is rolled back with its error", async () => {
    const threadId = `browser-opt-${Date.now().toString(36)}`;
    const client = createArtifactsClient({ baseUrl: server.url });
    await client.createArtifact(threadId, { artifactType: "note", identityKey: "k", payload: { text: "original" } });
    const page = await openThread(threadId);
    // The page's POSTs wait here until the test lets each one go.
    const held: Array<() => void> = [];
    await page.route(`${server.url}/v1/threads/${threadId}/artifacts`, (route) => {
      held.push(() => void route.continue());
    });
    const release = async () => {
      await expect.poll(() => held.length, WAIT).toBe(1);
      held.shift()?.();
    };
    try {
      await item(page, "original").waitFor(WAIT);
      await page.locator('input[name="identityKey"]').fill("");
      await page.locator('textarea[name="payload"]').fill('{"text": "optimistic"}');
      await page.getByRole("button", { name: "Create artifact" }).click();
      const pending = page.locator("#artifacts li[data-pending]", { hasText: "optimistic" });
      await pending.waitFor(WAIT);
      expect(await pending.locator(".muted").textContent()).toContain("pending");
      expect(await page.locator("#seq").textContent()).toBe("1");
      await release();
      await page.locator("#artifacts li:not([data-pending])", { hasText: "optimistic" }).waitFor(WAIT);
      await page.locator("#seq", { hasText: /^2$/ }).waitFor(WAIT);

      // Same type and identity key, another payload: 409 identity_conflict.
      await page.locator('input[name="identityKey"]').fill("k");
      await page.locator('textarea[name="payload"]').fill('{"text": "conflicting"}');
      await page.getByRole("button", { name: "Create artifact" }).click();
      await page.locator("#artifacts li[data-pending]", { hasText: "conflicting" }).waitFor(WAIT);
      await release();
      await page.locator("#error", { hasText: "identity_conflict" }).waitFor(WAIT);
      await item(page, "original").waitFor(WAIT);
      expect(await item(page, "conflicting").count()).toBe(0);
      expect(await page.locator("#artifacts li[data-pending]").count()).toBe(0);
      expect(await page.locator("#artifacts li").count()).toBe(2);
    } finally {
      await page.close();
    }
  });

  it("?threads= shows a list of 8 threads updating live through one connection (past the 6 connections of HTTP/1.1)", async () => {
    const client = createArtifactsClient({ baseUrl: server.url });
    const threads = Array.from({ length: 8 }, (_, i) => `browser-list-${Date.now().toString(36)}-${i}`);
    // One thread already has an artifact: the page reads it, then follows from its seq.
    await client.createArtifact(threads[0] as string, { artifactType: "note", payload: { text: "before the page" } });
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on("pageerror", (error) => problems.push(String(error)));
    // Count the event streams the page opens (the store's fetch, or an EventSource: any request).
    const streams: string[] = [];
    page.on("request", (request) => {
      if (new URL(request.url()).pathname.endsWith("/events")) streams.push(request.url());
    });
    try {
      await page.goto(`${server.url}/?threads=${threads.join(",")}`);
      await page.locator('#status[data-state="live"]').waitFor(WAIT);
      await page.locator(`section[data-thread="${threads[0]}"] li`, { hasText: "before the page" }).waitFor(WAIT);
      for (const [i, threadId] of threads.entries()) {
        await client.createArtifact(threadId, { artifactType: "note", payload: { text: `live in ${i}` } });
      }
      for (const [i, threadId] of threads.entries()) {
        await page.locator(`section[data-thread="${threadId}"] li`, { hasText: `live in ${i}` }).waitFor(WAIT);
      }
      await page.locator(`section[data-thread="${threads[0]}"] h2`, { hasText: "2 artifacts · seq 2" }).waitFor(WAIT);
      expect(streams).toHaveLength(1);
      expect(streams[0]).toContain("/v1/events?threads=");
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it("a thread deleted elsewhere empties in the open page, which then shows its next life", async () => {
    const threadId = `browser-del-${Date.now().toString(36)}`;
    const client = createArtifactsClient({ baseUrl: server.url });
    await client.createArtifact(threadId, { artifactType: "note", payload: { text: "old life" } });
    const page = await openThread(threadId);
    try {
      await item(page, "old life").waitFor(WAIT);
      const deleted = await fetch(`${server.url}/v1/threads/${threadId}`, { method: "DELETE" });
      expect(deleted.status).toBe(200);
      await item(page, "old life").waitFor({ state: "detached", ...WAIT });
      await page.locator("#seq", { hasText: /^2$/ }).waitFor(WAIT);
      // The EventSource reconnects after the tombstone's id and follows the next life.
      await client.createArtifact(threadId, { artifactType: "note", payload: { text: "next life" } });
      await item(page, "next life").waitFor(WAIT);
      expect(await page.locator("#artifacts li").count()).toBe(1);
      await page.locator("#seq", { hasText: /^3$/ }).waitFor(WAIT);
    } finally {
      await page.close();
    }
  });
});
