/**
 * The floor: the least a Hono server on @hono/node-server can do for each measured
 * route, over libSQL with the service's own settings (a file, one connection, WAL,
 * synchronous=NORMAL, so no fsync on commit). Not a service: no validation, no rollout.
 *
 * - POST /floor/threads/:threadId/artifacts: parse the JSON body, ONE libSQL INSERT,
 *   then fan the row out in memory to the thread's open streams; 201.
 * - POST /floor-durable/threads/:threadId/artifacts: the same, after writing the body
 *   put-if-absent through the service's own FsBlobStore (temp file + fsync, link, folder
 *   fsync): the floor for our durability budget. No per-thread ordering.
 * - GET /floor/threads/:threadId: the SELECTs read-thread's cache path runs (thread row +
 *   artifact bodies in position order, one batch) on the service's own tables, answered
 *   by string concatenation (no parse, no re-serialize).
 * - GET /floor/threads/:threadId/events: `streamSSE`, fed only by the POST above.
 *
 * Env: FLOOR_DB (file path), FLOOR_BLOBS (folder for the durable floor), PORT, HOST.
 */
import { randomUUID } from "node:crypto";
import { serve } from "@hono/node-server";
import { createClient } from "@libsql/client";
import { Hono } from "hono";
import { type SSEStreamingApi, streamSSE } from "hono/streaming";
import { FsBlobStore } from "../../src/blob/fs.ts";

const file = process.env.FLOOR_DB;
if (!file) throw new Error("FLOOR_DB is required");
const db = createClient({ url: `file:${file}`, timeout: 5000, concurrency: 1 });
await db.execute("PRAGMA journal_mode = WAL");
await db.execute("PRAGMA synchronous = NORMAL");
await db.execute(
  `CREATE TABLE IF NOT EXISTS floor_artifacts (thread_id TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (thread_id, id)) WITHOUT ROWID`,
);

const subscribers = new Map<string, Set<SSEStreamingApi>>();
const seqs = new Map<string, number>();
const blobs = new FsBlobStore(process.env.FLOOR_BLOBS ?? `${file}.blobs`);
const blobSeqs = new Map<string, number>();

const app = new Hono();

app.post("/floor/threads/:threadId/artifacts", async (c) => {
  const threadId = c.req.param("threadId");
  const body = (await c.req.json()) as Record<string, unknown>;
  const id = randomUUID();
  const text = JSON.stringify(body);
  await db.execute({
    sql: "INSERT INTO floor_artifacts (thread_id, id, body) VALUES (?, ?, ?)",
    args: [threadId, id, text],
  });
  const streams = subscribers.get(threadId);
  if (streams && streams.size > 0) {
    const seq = (seqs.get(threadId) ?? 0) + 1;
    seqs.set(threadId, seq);
    const message = `id: ${seq}\nevent: artifact-updated\ndata: {"seq":${seq},"id":"${id}","artifact":${text}}\n\n`;
    for (const stream of streams) void stream.write(message);
  }
  return c.json({ artifact: { id, threadId } }, 201);
});

app.post("/floor-durable/threads/:threadId/artifacts", async (c) => {
  const threadId = c.req.param("threadId");
  const body = (await c.req.json()) as Record<string, unknown>;
  const id = randomUUID();
  const text = JSON.stringify(body);
  const seq = (blobSeqs.get(threadId) ?? 0) + 1;
  blobSeqs.set(threadId, seq);
  if ((await blobs.putIfAbsent(`floor/${threadId}/${String(seq).padStart(12, "0")}.json`, text)) !== "created") {
    return c.json({ error: "exists" }, 409);
  }
  await db.execute({
    sql: "INSERT INTO floor_artifacts (thread_id, id, body) VALUES (?, ?, ?)",
    args: [threadId, id, text],
  });
  return c.json({ artifact: { id, threadId, seq } }, 201);
});

app.get("/floor/threads/:threadId", async (c) => {
  const args = { t: "local", th: c.req.param("threadId") };
  const [thread, artifacts] = await db.batch(
    [
      { sql: `SELECT created_at, updated_at, seq FROM threads WHERE tenant = :t AND thread_id = :th`, args },
      { sql: `SELECT body FROM artifacts WHERE tenant = :t AND thread_id = :th ORDER BY position`, args },
    ],
    "read",
  );
  const row = thread?.rows[0];
  if (!row) return c.json({ error: "not found" }, 404);
  const bodies = (artifacts?.rows ?? []).map((r) => String(r.body));
  c.header("etag", `"${row.seq}"`);
  c.header("content-type", "application/json");
  return c.body(
    `{"thread":{"id":${
      JSON.stringify(args.th)
    },"createdAt":"${row.created_at}","updatedAt":"${row.updated_at}","rolloutSeq":${row.seq},"artifacts":[${
      bodies.join(",")
    }]}}`,
  );
});

app.get("/floor/threads/:threadId/events", (c) => {
  const threadId = c.req.param("threadId");
  return streamSSE(c, async (stream) => {
    let set = subscribers.get(threadId);
    if (!set) subscribers.set(threadId, set = new Set());
    set.add(stream);
    await stream.write("retry: 2000\n\n");
    await new Promise<void>((resolve) => {
      stream.onAbort(resolve);
      c.req.raw.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    set.delete(stream);
  });
});

const server = serve({
  fetch: app.fetch,
  port: Number(process.env.PORT ?? 0),
  hostname: process.env.HOST ?? "127.0.0.1",
}, (info) => {
  console.log(`floor listening on http://127.0.0.1:${info.port}`);
});
const shutdown = () => {
  server.close();
  db.close();
  process.exit(0);
};
process.once("SIGTERM", shutdown);
process.once("SIGINT", shutdown);
