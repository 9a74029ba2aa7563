/**
 * Client compatibility, part two: Chromium's own EventSource (Debian's Chromium through
 * playwright-core) against the real Node server process, the scenarios of
 * test/clients/compat.test.ts: subscribe before the thread exists, live events, a
 * restart on the same data (the browser reconnects with Last-Event-ID by itself), a
 * stream opened right after a restart, `?since=`, `?access_token=` (the only way an
 * EventSource can authenticate), and a 401 that closes the source instead of retrying.
 */
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { http, useCluster } from "../support/cluster.ts";
import { freePort, newThreadId } from "../support/live-server.ts";
import type { ServerProcess } from "../support/server-process.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "../support/chromium.ts";

const TOKEN = "browser-token";
const WAIT = { timeout: 30_000 };

const cluster = useCluster("all");
let env: Record<string, string>;
let server: ServerProcess;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  env = {
    DATA_DIR: cluster.tempDir("artifacts-browser-clients-"),
    PORT: String(await freePort()),
    AUTH_TOKENS: `${TOKEN}:acme`,
  };
  [server, browser] = await Promise.all([
    cluster.start(env),
    chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS }),
  ]);
  page = await browser.newPage();
  // Any page of the service's origin: the EventSources below are same-origin.
  await page.goto(`${server.url}/healthz`);
  await page.evaluate(() => {
    const w = window as unknown as {
      sources: Record<string, { source: EventSource; seqs: number[]; ids: string[]; errors: number }>;
    };
    w.sources = {};
  });
});

afterAll(async () => {
  await browser?.close();
});

async function create(threadId: string, n: number): Promise<void> {
  const r = await http(server.url, "POST", `/v1/threads/${threadId}/artifacts`, {
    artifactType: "note",
    payload: { n },
  }, { authorization: `Bearer ${TOKEN}` });
  expect(r.status, r.text).toBe(201);
}

async function restart(): Promise<void> {
  await server.stop();
  server = await cluster.start(env);
}

/** Opens an EventSource named `name` in the page on `path` (with the token in the query unless told otherwise). */
async function openSource(name: string, path: string, token: string = TOKEN): Promise<void> {
  await page.evaluate(
    ({ name, url }) => {
      const w = window as unknown as {
        sources: Record<string, { source: EventSource; seqs: number[]; ids: string[]; errors: number }>;
      };
      const entry = { source: new EventSource(url), seqs: [] as number[], ids: [] as string[], errors: 0 };
      entry.source.addEventListener("artifact-updated", (event) => {
        entry.seqs.push((JSON.parse((event as MessageEvent).data) as { seq: number }).seq);
        entry.ids.push((event as MessageEvent).lastEventId);
      });
      entry.source.addEventListener("error", () => entry.errors++);
      w.sources[name] = entry;
    },
    { name, url: `${path}${path.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(token)}` },
  );
}

const seqsOf = (name: string) =>
  page.evaluate(
    (n) => (window as unknown as { sources: Record<string, { seqs: number[] }> }).sources[n]?.seqs ?? [],
    name,
  );
const untilCount = (name: string, count: number) =>
  page.waitForFunction(
    ({ n, c }) =>
      ((window as unknown as { sources: Record<string, { seqs: number[] }> }).sources[n]?.seqs.length ?? 0) >= c,
    { n: name, c: count },
    WAIT,
  );
const closeSource = (name: string) =>
  page.evaluate(
    (n) => (window as unknown as { sources: Record<string, { source: EventSource }> }).sources[n]?.source.close(),
    name,
  );
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("Chromium's EventSource", () => {
  it("subscribes before the thread exists and receives its events live, ids = seqs", async () => {
    const threadId = newThreadId("chromium-live");
    await openSource("live", `/v1/threads/${threadId}/events`);
    await page.waitForFunction(
      () =>
        (window as unknown as { sources: Record<string, { source: EventSource }> }).sources.live?.source.readyState ===
          1,
      undefined,
      WAIT,
    );
    for (let n = 1; n <= 3; n++) await create(threadId, n);
    await untilCount("live", 3);
    expect(await seqsOf("live")).toEqual([1, 2, 3]);
    expect(
      await page.evaluate(() =>
        (window as unknown as { sources: Record<string, { ids: string[] }> }).sources.live?.ids
      ),
    ).toEqual(["1", "2", "3"]);
    await closeSource("live");
  });

  it("survives a server restart on the same data: it reconnects with Last-Event-ID, nothing lost, nothing twice", async () => {
    const threadId = newThreadId("chromium-restart");
    await openSource("restart", `/v1/threads/${threadId}/events`);
    for (let n = 1; n <= 3; n++) await create(threadId, n);
    await untilCount("restart", 3);
    await restart();
    for (let n = 4; n <= 6; n++) await create(threadId, n);
    await untilCount("restart", 6);
    expect(await seqsOf("restart")).toEqual(range(1, 6));
    await closeSource("restart");
  });

  it("a stream opened in the first moments after a restart delivers", async () => {
    await restart();
    const threadId = newThreadId("chromium-early");
    await openSource("early", `/v1/threads/${threadId}/events`);
    for (let n = 1; n <= 10; n++) await create(threadId, n);
    await untilCount("early", 10);
    expect(await seqsOf("early")).toEqual(range(1, 10));
    await closeSource("early");
  });

  it("starts after ?since=", async () => {
    const threadId = newThreadId("chromium-since");
    for (let n = 1; n <= 5; n++) await create(threadId, n);
    await openSource("since", `/v1/threads/${threadId}/events?since=3`);
    await untilCount("since", 2);
    expect(await seqsOf("since")).toEqual([4, 5]);
    await closeSource("since");
  });

  it("a 401 closes the source (readyState CLOSED) instead of retrying", async () => {
    await openSource("denied", `/v1/threads/${newThreadId("chromium-401")}/events`, "not-a-token");
    await page.waitForFunction(
      () =>
        (window as unknown as { sources: Record<string, { source: EventSource }> }).sources.denied?.source
          .readyState === 2,
      undefined,
      WAIT,
    );
    expect(
      await page.evaluate(() =>
        (window as unknown as { sources: Record<string, { errors: number }> }).sources.denied?.errors
      ),
    ).toBe(1);
    expect(await seqsOf("denied")).toEqual([]);
  });
});
