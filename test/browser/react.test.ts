/**
 * `thread-artifacts/react` in a real browser (Debian's Chromium through playwright-core)
 * against a real server process: test/browser/react-app.tsx, bundled by esbuild here
 * (React's development build, in StrictMode), served from another origin than the API
 * (so the API's CORS is part of it). Two tabs on one thread see each other's creates and
 * edits; a create shows at once, marked pending, while its POST is held back; a create
 * the server refuses (identity_conflict) is rolled back and its error shown; a thread
 * deleted elsewhere shows as deleted; another thread is a new store, the old stream ends.
 * Waits are on DOM states, never sleeps. Run with `npm run test:browser`.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createArtifactsClient } from "../../src/client/index.ts";
import { useCluster } from "../support/cluster.ts";
import type { ServerProcess } from "../support/server-process.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "../support/chromium.ts";

const WAIT = { timeout: 20_000 };
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

const cluster = useCluster("all");
let server: ServerProcess;
let browser: Browser;
let site: Server;
let siteOrigin: string;

/** The app, bundled as an app would be (its imports through the package's exports). */
async function bundleApp(): Promise<string> {
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: ["test/browser/react-app.tsx"],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    jsx: "automatic",
    // React's development build: StrictMode runs effects twice, and misuse is reported.
    define: { "process.env.NODE_ENV": '"development"' },
    write: false,
    logLevel: "silent",
  });
  return result.outputFiles[0]?.text ?? "";
}

beforeAll(async () => {
  const app = await bundleApp();
  const html = '<!doctype html><meta charset="utf-8"><title>react</title><div id="root"></div>' +
    '<script type="module" src="/app.js"></script>';
  site = createServer((req, res) => {
    const js = req.url === "/app.js";
    res.writeHead(200, { "content-type": js ? "text/javascript" : "text/html", "cache-control": "no-store" });
    res.end(js ? app : html);
  });
  await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
  siteOrigin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  [server, browser] = await Promise.all([
    cluster.start({ DATA_DIR: cluster.tempDir("artifacts-react-"), CORS_ORIGINS: siteOrigin }),
    chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS }),
  ]);
});

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => site?.close(resolve));
});

interface Tab {
  page: Page;
  /** Uncaught errors and React's console errors (a getSnapshot that is not cached, a bad key...). */
  problems: string[];
  /** The API's event streams the tab opened, and those that ended from its side. */
  streams: string[];
  aborted: string[];
  /** GETs of a thread (its reads). */
  reads: string[];
}

async function openTab(threadId: string): Promise<Tab> {
  const page = await browser.newPage();
  const tab: Tab = { page, problems: [], streams: [], aborted: [], reads: [] };
  page.on("pageerror", (error) => tab.problems.push(String(error)));
  page.on("console", (message) => {
    // A refused write is logged by Chromium itself ("Failed to load resource"): expected.
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      tab.problems.push(message.text());
    }
  });
  const isStream = (url: string) => url.startsWith(server.url) && new URL(url).pathname.endsWith("/events");
  page.on("request", (request) => {
    const url = request.url();
    if (request.method() !== "GET" || !url.startsWith(server.url)) return;
    if (isStream(url)) tab.streams.push(url);
    else if (/^\/v1\/threads\/[^/]+$/.test(new URL(url).pathname)) tab.reads.push(url);
  });
  page.on("requestfailed", (request) => {
    if (isStream(request.url())) tab.aborted.push(request.url());
  });
  const query = new URLSearchParams({ api: server.url, thread: threadId });
  await page.goto(`${siteOrigin}/?${query}`);
  await page.locator('#status[data-state="live"]').waitFor(WAIT);
  return tab;
}

/** Holds the tab's POSTs of new artifacts to the API until `release()`; `held` resolves when one is held. */
async function holdCreates(page: Page, threadId: string) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let onHeld!: () => void;
  const held = new Promise<void>((resolve) => (onHeld = resolve));
  const path = `/v1/threads/${threadId}/artifacts`;
  await page.route((url) => url.origin === server.url && url.pathname === path, async (route) => {
    if (route.request().method() !== "POST") return route.continue();
    onHeld();
    await released;
    await route.continue();
  });
  return { held, release };
}

const item = (page: Page, text: string) => page.locator("#artifacts li", { hasText: text });

async function create(page: Page, input: { identityKey?: string; payload: unknown }): Promise<void> {
  await page.locator('#create input[name="identityKey"]').fill(input.identityKey ?? "");
  await page.locator('#create textarea[name="payload"]').fill(JSON.stringify(input.payload));
  await page.getByRole("button", { name: "Create artifact" }).click();
}

async function close(...tabs: Tab[]): Promise<void> {
  for (const tab of tabs) expect(tab.problems).toEqual([]);
  await Promise.all(tabs.map((tab) => tab.page.close()));
}

describe("useThread in Chromium", () => {
  it("two tabs on one thread: a create in one and an edit in the other show in both; StrictMode keeps one store per tab", async () => {
    const threadId = `react-${Date.now().toString(36)}`;
    const [one, two] = [await openTab(threadId), await openTab(threadId)];
    try {
      // StrictMode subscribed twice: still one read and one stream each (the store was kept).
      for (const tab of [one, two]) {
        expect(tab.reads).toHaveLength(1);
        expect(tab.streams).toHaveLength(1);
      }

      await create(one.page, { payload: { text: "made in tab one" } });
      for (const tab of [one, two]) {
        await tab.page.locator("#artifacts li:not([data-pending])", { hasText: "made in tab one" }).waitFor(WAIT);
        await tab.page.locator("#seq", { hasText: /^1$/ }).waitFor(WAIT);
      }
      const [artifact] = (await createArtifactsClient({ baseUrl: server.url }).readThread(threadId)).artifacts;
      expect(await two.page.locator("#artifacts li").getAttribute("data-id")).toBe(artifact?.id);

      // Edited in tab two, seen in tab one.
      await item(two.page, "made in tab one").locator('input[name="text"]').fill("edited in tab two");
      await item(two.page, "made in tab one").getByRole("button", { name: "Save" }).click();
      for (const tab of [one, two]) {
        await tab.page.locator("#artifacts li:not([data-pending])", { hasText: "edited in tab two" }).waitFor(WAIT);
        await tab.page.locator("#seq", { hasText: /^2$/ }).waitFor(WAIT);
        expect(await tab.page.locator("#artifacts li .muted").textContent()).toContain("v2");
        expect(await tab.page.locator("#artifacts li").count()).toBe(1);
      }
      for (const tab of [one, two]) expect(tab.streams).toHaveLength(1);
    } finally {
      await close(one, two);
    }
  });

  it("an optimistic create shows at once, marked pending, while its POST is held; its answer confirms it", async () => {
    const threadId = `react-opt-${Date.now().toString(36)}`;
    const [one, two] = [await openTab(threadId), await openTab(threadId)];
    try {
      const hold = await holdCreates(one.page, threadId);
      await create(one.page, { payload: { text: "optimistic" } });
      await hold.held;
      // The POST has not reached the server: tab one shows it pending, tab two has nothing.
      const pending = one.page.locator("#artifacts li[data-pending]", { hasText: "optimistic" });
      await pending.waitFor(WAIT);
      expect(await pending.getAttribute("data-id")).toMatch(/^pending:/);
      expect(await one.page.locator("#pending").textContent()).toBe("1");
      expect(await one.page.locator("#seq").textContent()).toBe("0");
      expect(await two.page.locator("#artifacts li").count()).toBe(0);

      hold.release();
      for (const tab of [one, two]) {
        await tab.page.locator("#artifacts li:not([data-pending])", { hasText: "optimistic" }).waitFor(WAIT);
        await tab.page.locator("#seq", { hasText: /^1$/ }).waitFor(WAIT);
      }
      await one.page.locator("#pending", { hasText: /^0$/ }).waitFor(WAIT);
      expect(await one.page.locator("#artifacts li").count()).toBe(1);
      expect(await one.page.locator("#artifacts li").getAttribute("data-id")).not.toMatch(/^pending:/);
      expect(await one.page.locator("#error").textContent()).toBe("");
    } finally {
      await close(one, two);
    }
  });

  it("a create the server refuses (409 identity_conflict) shows pending, then is rolled back with its error", async () => {
    const threadId = `react-409-${Date.now().toString(36)}`;
    const client = createArtifactsClient({ baseUrl: server.url });
    await client.createArtifact(threadId, { artifactType: "note", identityKey: "k", payload: { text: "original" } });
    const tab = await openTab(threadId);
    try {
      await item(tab.page, "original").waitFor(WAIT);
      const hold = await holdCreates(tab.page, threadId);
      await create(tab.page, { identityKey: "k", payload: { text: "conflicting" } });
      await hold.held;
      // Same type and identity key: shown as that artifact with the new payload, pending.
      await tab.page.locator("#artifacts li[data-pending]", { hasText: "conflicting" }).waitFor(WAIT);
      expect(await tab.page.locator("#artifacts li").count()).toBe(1);

      hold.release();
      await tab.page.locator("#error", { hasText: "identity_conflict" }).waitFor(WAIT);
      await item(tab.page, "original").waitFor(WAIT);
      expect(await item(tab.page, "conflicting").count()).toBe(0);
      expect(await tab.page.locator("#artifacts li[data-pending]").count()).toBe(0);
      expect(await tab.page.locator("#pending").textContent()).toBe("0");
      expect(await tab.page.locator("#seq").textContent()).toBe("1");
    } finally {
      await close(tab);
    }
  });

  it("a thread deleted elsewhere shows as deleted in every tab, then its next life", async () => {
    const threadId = `react-del-${Date.now().toString(36)}`;
    const client = createArtifactsClient({ baseUrl: server.url });
    await client.createArtifact(threadId, { artifactType: "note", payload: { text: "old life" } });
    const [one, two] = [await openTab(threadId), await openTab(threadId)];
    try {
      for (const tab of [one, two]) await item(tab.page, "old life").waitFor(WAIT);
      const deleted = await fetch(`${server.url}/v1/threads/${threadId}`, { method: "DELETE" });
      expect(deleted.status).toBe(200);
      for (const tab of [one, two]) {
        await tab.page.locator('#status[data-state="deleted"]').waitFor(WAIT);
        await tab.page.locator("#seq", { hasText: /^2$/ }).waitFor(WAIT);
        expect(await tab.page.locator("#artifacts li").count()).toBe(0);
      }
      await client.createArtifact(threadId, { artifactType: "note", payload: { text: "next life" } });
      for (const tab of [one, two]) {
        await item(tab.page, "next life").waitFor(WAIT);
        await tab.page.locator('#status[data-state="live"]').waitFor(WAIT);
        expect(await tab.page.locator("#artifacts li").count()).toBe(1);
      }
    } finally {
      await close(one, two);
    }
  });

  it("another thread id is another store: its own read and stream, and the old stream ends", async () => {
    const first = `react-a-${Date.now().toString(36)}`;
    const second = `react-b-${Date.now().toString(36)}`;
    const client = createArtifactsClient({ baseUrl: server.url });
    await client.createArtifact(second, { artifactType: "note", payload: { text: "in the second thread" } });
    const tab = await openTab(first);
    try {
      expect(tab.streams).toHaveLength(1);
      await tab.page.locator("#thread").fill(second);
      await tab.page.locator("#thread").press("Enter");
      await tab.page.locator(`section[data-thread="${second}"] #status[data-state="live"]`).waitFor(WAIT);
      await item(tab.page, "in the second thread").waitFor(WAIT);
      expect(tab.streams).toHaveLength(2);
      expect(tab.streams[1]).toContain(`/v1/threads/${second}/events`);
      await expect.poll(() => tab.aborted, WAIT).toEqual([tab.streams[0]]);
      // The first thread's store is closed: its writes reach nobody's screen here.
      await client.createArtifact(first, { artifactType: "note", payload: { text: "in the first thread" } });
      await client.createArtifact(second, { artifactType: "note", payload: { text: "second again" } });
      await item(tab.page, "second again").waitFor(WAIT);
      expect(await item(tab.page, "in the first thread").count()).toBe(0);
    } finally {
      await close(tab);
    }
  });
});
