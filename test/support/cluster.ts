// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
/**
 * Helpers for the multi-process integration suites: fresh data folders, real child
 * server processes that are always stopped, a small JSON HTTP client, a closed TCP
 * port (a libSQL URL nobody answers), and direct views of what is on disk (the
 * rollout folder through FsBlobStore + Rollout, the libSQL file through @libsql/client).
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { FsBlobStore } from "../../src/blob/fs.ts";
import type { Artifact, ThreadState } from "../../src/model/artifact.ts";
import { materialize } from "../../src/model/materialize.ts";
import { type ArtifactEvent, type Patch, toEvent } from "../../src/model/patch.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { type ServerProcess, startServer } from "./server-process.ts";
import { readJsonResult } from "./http.ts";

export const TENANT = "local";

export interface HttpResult {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

/** One JSON request against a real server; the body is always read so the socket is freed. */
export async function http(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<HttpResult> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["content-type"] = "application/json";
  }
  const response = await fetch(new URL(path, base), init);
  return readJsonResult(response);
}

/**
 * Tracks temp folders and child servers of one suite; `cleanup()` (afterEach) stops
 * every child still running and removes every folder, even when a test failed midway.
 */
export class Cluster {
  readonly #servers: ServerProcess[] = [];
  readonly #dirs: string[] = [];

  tempDir(prefix = "artifacts-int-"): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.#dirs.push(dir);
    return dir;
  }

  async start(env: Record<string, string>): Promise<ServerProcess> {
    const server = await startServer(env);
    this.#servers.push(server);
    return server;
  }

  /** Starts several servers at once (each waits for its own listening line). */
  startMany(envs: Record<string, string>[]): Promise<ServerProcess[]> {
    return Promise.all(envs.map((env) => this.start(env)));
  }

  async cleanup(): Promise<void> {
    const servers = this.#servers.splice(0);
    await Promise.all(servers.map((s) => s.kill()));
    for (const dir of this.#dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}

/** A loopback port that was bound and then closed: connecting to it is refused. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
  return address.port;
}

/** The file names in the thread's patches folder, sorted (the raw folder, not the Rollout's view). */
export function patchFiles(rolloutDir: string, threadId: string, tenant = TENANT): string[] {
  const dir = join(rolloutDir, "tenants", tenant, "threads", threadId, "patches");
  return readdirSync(dir).sort();
}

export function snapshotFiles(rolloutDir: string, threadId: string, tenant = TENANT): string[] {
  const dir = join(rolloutDir, "tenants", tenant, "threads", threadId, "snapshots");
  try {
    return readdirSync(dir).sort();
  } catch (error) {
    if ((error as { code?: string }).code === "ENOENT") return [];
    throw error;
  }
}

/** `000000000001.json` .. `N`: what an intact rollout of N patches holds. */
export function expectedPatchFiles(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${String(i + 1).padStart(12, "0")}.json`);
}

/** Every patch of the thread, read from the folder through the real FsBlobStore + Rollout. */
export async function readRollout(rolloutDir: string, threadId: string, tenant = TENANT): Promise<Patch[]> {
  const rollout = new Rollout(new FsBlobStore(rolloutDir), { snapshotEvery: 0 });
  return rollout.readPatches(tenant, threadId, 0);
}

/** The thread replayed from patch 1, ignoring snapshots: the truth the cache must equal. */
export async function replay(rolloutDir: string, threadId: string, tenant = TENANT): Promise<ThreadState> {
  const state = materialize(null, await readRollout(rolloutDir, threadId, tenant));
  if (!state) throw new Error(`thread ${threadId} has no patch`);
  return state;
}

/** The read-thread `thread` object a replayed state must produce. */
export function threadView(state: ThreadState) {
  return {
    id: state.threadId,
    createdAt: state.createdAt,
    updatedAt: state.updatedAt,
    rolloutSeq: state.seq,
    artifacts: state.artifacts,
  };
}

export interface CacheRows {
  thread: { createdAt: string; updatedAt: string; seq: number } | null;
  artifacts: Artifact[];
  /** The durable event log rows, by seq. */
  events: { seq: number; data: ArtifactEvent }[];
}

/** The libSQL rows of one thread, read straight from the database file. */
export async function readCacheFile(dbPath: string, threadId: string, tenant = TENANT): Promise<CacheRows> {
  const client = createClient({ url: `file:${dbPath}` });
  try {
    const args = { t: tenant, th: threadId };
    const [thread, artifacts, events] = await client.batch(
      [
        { sql: "SELECT created_at, updated_at, seq FROM threads WHERE tenant = :t AND thread_id = :th", args },
        { sql: "SELECT body FROM artifacts WHERE tenant = :t AND thread_id = :th ORDER BY position", args },
        { sql: "SELECT seq, data FROM events WHERE tenant = :t AND thread_id = :th ORDER BY seq", args },
      ],
      "read",
    );
    const row = thread?.rows[0];
    return {
      thread: row
        ? { createdAt: String(row.created_at), updatedAt: String(row.updated_at), seq: Number(row.seq) }
        : null,
      artifacts: (artifacts?.rows ?? []).map((r) => JSON.parse(String(r.body)) as Artifact),
      events: (events?.rows ?? []).map((r) => ({
        seq: Number(r.seq),
        data: JSON.parse(String(r.data)) as ArtifactEvent,
      })),
    };
  } finally {
    client.close();
  }
}

/** What the cache rows of a thread must be after every patch was applied one by one. */
export function expectedCacheRows(patches: readonly Patch[]): CacheRows {
  const state = materialize(null, patches);
  if (!state) throw new Error("no patches");
  return {
    thread: { createdAt: state.createdAt, updatedAt: state.updatedAt, seq: state.seq },
    artifacts: state.artifacts,
    events: patches.map((p) => ({ seq: p.seq, data: toEvent(p) })),
  };
}

/** 1..n */
export function range(n: number, from = 1): number[] {
  return Array.from({ length: n }, (_, i) => from + i);
}
