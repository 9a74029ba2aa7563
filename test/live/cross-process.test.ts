// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
/**
 * DESIGN.md guarantee 6 across processes: two real Node servers share one DATA_DIR (one
 * rollout folder, one libSQL file). No hint crosses processes, so a stream on process A
 * learns of process B's writes only by polling its durable log (SSE_POLL_MS=50 here).
 * Also with B's cache unreachable: B writes only to the rollout, and A's stream still
 * delivers every patch, because readEvents checks the rollout past its cache and
 * repairs the cache it finds behind.
 */
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import type { Artifact } from "../../src/model/artifact.ts";
import { type Patch, patchesOf, toEvent } from "../../src/model/patch.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { useCluster } from "../support/cluster.ts";
import { freePort, newThreadId } from "../support/live-server.ts";
import type { ServerProcess } from "../support/server-process.ts";
import { SseConnection } from "../support/sse.ts";

const cluster = useCluster();
const streams: SseConnection[] = [];
// Registered after the cluster's hook, so it runs first: streams close before their servers stop.
afterEach(async () => {
  await Promise.all(streams.splice(0).map((s) => s.close()));
});

let deadLibsqlUrl: string;
beforeAll(async () => {
  deadLibsqlUrl = `http://127.0.0.1:${await freePort()}`;
});

/** Processes A and B on one fresh DATA_DIR, each with its own env on top. */
async function pair(
  envA: Record<string, string> = {},
  envB: Record<string, string> = {},
): Promise<{ a: ServerProcess; b: ServerProcess; rolloutDir: string }> {
  const { dir, rolloutDir } = cluster.dataDir("artifacts-live-xp-");
  const common = { DATA_DIR: dir, SSE_POLL_MS: "50" };
  const [a, b] = await cluster.startMany([{ ...common, ...envA }, { ...common, ...envB }]) as [
    ServerProcess,
    ServerProcess,
  ];
  return { a, b, rolloutDir };
}

async function openOn(
  server: ServerProcess,
  threadId: string,
  headers: Record<string, string> = {},
): Promise<SseConnection> {
  const stream = await SseConnection.open(`${server.url}/v1/threads/${threadId}/events`, headers);
  streams.push(stream);
  expect(stream.response.status).toBe(200);
  await stream.until((c) => c.parser.retries.length > 0, "retry");
  return stream;
}

async function call(server: ServerProcess, method: string, path: string, body?: unknown): Promise<any> {
  const response = await fetch(`${server.url}${path}`, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
  });
  const text = await response.text();
  expect(response.status, text).toBeLessThan(300);
  return { json: JSON.parse(text), headers: response.headers };
}

/** A fixed mix of creates, updates and removes on `threadId` through `writer(i)`; returns the number of patches. */
async function writeMix(threadId: string, writer: (i: number) => ServerProcess): Promise<number> {
  const ids: string[] = [];
  let seq = 0;
  for (let i = 0; i < 12; i++) {
    const server = writer(i);
    if (i % 4 === 3 && ids.length > 0) {
      const id = ids.shift() as string;
      const { json } = await call(server, "DELETE", `/v1/threads/${threadId}/artifacts/${id}`);
      expect(json.removed.seq).toBe(++seq);
    } else if (i % 3 === 2 && ids.length > 0) {
      const { json } = await call(server, "PATCH", `/v1/threads/${threadId}/artifacts/${ids[0]}`, {
        payload: { updated: i },
      });
      expect((json.artifact as Artifact).seq).toBe(++seq);
    } else {
      const { json } = await call(server, "POST", `/v1/threads/${threadId}/artifacts`, {
        artifactType: "note",
        payload: { i },
      });
      expect((json.artifact as Artifact).seq).toBe(++seq);
      ids.push(json.artifact.id);
    }
  }
  return seq;
}

function rolloutPatches(rolloutDir: string, threadId: string): Promise<Patch[]> {
  return new Rollout(new FsBlobStore(rolloutDir)).listCommits("local", threadId, 0).then(patchesOf);
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe("streams across processes sharing one DATA_DIR", () => {
  it("a subscriber on A receives B's writes in order, by polling alone", async () => {
    const { a, b, rolloutDir } = await pair();
    const threadId = newThreadId("xp");
    // Subscribed before the thread exists, on the process that never writes.
    const stream = await openOn(a, threadId);
    const total = await writeMix(threadId, () => b);
    await stream.untilSeq(total);
    expect(stream.seqs).toEqual(range(total));
    expect(stream.events.map((e) => e.id)).toEqual(range(total).map(String));
    expect(stream.events.map((e) => e.event)).toEqual((await rolloutPatches(rolloutDir, threadId)).map(toEvent));
    expect(stream.events.map((e) => e.event.op)).toContain("update");
    expect(stream.events.map((e) => e.event.op)).toContain("remove");
  });

  it("writes alternating between A and B reach subscribers on both, each once, in order", async () => {
    const { a, b, rolloutDir } = await pair();
    const threadId = newThreadId("xp-alt");
    const onA = await openOn(a, threadId);
    const onB = await openOn(b, threadId);
    const total = await writeMix(threadId, (i) => (i % 2 === 0 ? a : b));
    await Promise.all([onA.untilSeq(total), onB.untilSeq(total)]);
    const expected = (await rolloutPatches(rolloutDir, threadId)).map(toEvent);
    expect(onA.events.map((e) => e.event)).toEqual(expected);
    expect(onB.events.map((e) => e.event)).toEqual(expected);
  });

  it("B with an unreachable cache writes only to the rollout; A's stream still delivers every patch and A's cache is repaired", async () => {
    const { a, b, rolloutDir } = await pair({}, { LIBSQL_URL: deadLibsqlUrl });
    const threadId = newThreadId("xp-nocache");
    const stream = await openOn(a, threadId);
    const total = await writeMix(threadId, () => b);
    await stream.untilSeq(total);
    const expected = (await rolloutPatches(rolloutDir, threadId)).map(toEvent);
    expect(stream.seqs).toEqual(range(total));
    expect(stream.events.map((e) => e.event)).toEqual(expected);

    // The stream's reads repaired A's cache: a cache-only read now has every patch.
    const cached = await call(a, "GET", `/v1/threads/${threadId}?consistency=cache`);
    expect(cached.headers.get("x-artifacts-source")).toBe("cache");
    expect(cached.json.thread.rolloutSeq).toBe(total);

    // A late subscriber on A resuming mid-way gets exactly the rest.
    const late = await openOn(a, threadId, { "last-event-id": "5" });
    await late.untilSeq(total);
    expect(late.events.map((e) => e.event)).toEqual(expected.slice(5));
  });

  it("A with an unreachable cache tails the rollout: its stream still delivers B's writes", async () => {
    const { a, b, rolloutDir } = await pair({ LIBSQL_URL: deadLibsqlUrl });
    const threadId = newThreadId("xp-tail");
    const stream = await openOn(a, threadId);
    const total = await writeMix(threadId, () => b);
    await stream.untilSeq(total);
    expect(stream.seqs).toEqual(range(total));
    expect(stream.events.map((e) => e.event)).toEqual((await rolloutPatches(rolloutDir, threadId)).map(toEvent));
  });
});
