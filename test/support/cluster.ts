// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
/**
 * The fixture of every suite that runs real server processes: `useCluster()` gives a
 * `Cluster` of fresh data folders and child servers that are always stopped and removed
 * after each test (or after the suite); `shared(n)` starts n Node servers on one
 * DATA_DIR. Also a small JSON HTTP client, a closed TCP port (a libSQL URL nobody
 * answers), and direct views of what is on disk (the rollout folder through
 * FsBlobStore + Rollout, the libSQL file through @libsql/client).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { afterAll, afterEach, expect, onTestFailed } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import type { Artifact, ThreadState } from "../../src/model/artifact.ts";
import { materialize } from "../../src/model/materialize.ts";
import { type ArtifactEvent, type ArtifactPatch, patchesOf, toEvent } from "../../src/model/patch.ts";
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

/** A DATA_DIR and where the Node runtime keeps its rollout folder and libSQL file in it. */
export interface DataDir {
  dir: string;
  rolloutDir: string;
  dbPath: string;
}

/** Servers on one DATA_DIR, and the env each was started with (DATA_DIR included), to restart one with. */
export interface SharedServers extends DataDir {
  env: Record<string, string>;
  servers: [ServerProcess, ...ServerProcess[]];
}

/**
 * Tracks temp folders and child servers of one suite; `cleanup()` stops every child
 * still running and removes every folder, even when a test failed midway.
 */
export class Cluster {
  readonly #servers: ServerProcess[] = [];
  readonly #dirs: string[] = [];

  tempDir(prefix = "artifacts-int-"): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.#dirs.push(dir);
    return dir;
  }

  /** A fresh DATA_DIR, with the paths of its rollout folder and libSQL file. */
  dataDir(prefix?: string): DataDir {
    const dir = this.tempDir(prefix);
    return { dir, rolloutDir: join(dir, "rollouts"), dbPath: join(dir, "artifacts.db") };
  }

  /** A server started by `spawn` (default: the Node server, src/runtime/node.ts), stopped by `cleanup()`. */
  async start(
    env: Record<string, string>,
    spawn: (env: Record<string, string>) => Promise<ServerProcess> = startServer,
  ): Promise<ServerProcess> {
    const server = await spawn(env);
    this.#servers.push(server);
    // What the server said is the first thing to read when a test of it fails (there
    // is no test to hook into when the server is started in a beforeAll).
    try {
      onTestFailed(() => console.error(`--- output of the server at ${server.url}:\n${server.output()}`));
    } catch {
      // started outside a test
    }
    return server;
  }

  /** Starts several servers at once (each waits for its own listening line). */
  startMany(envs: Record<string, string>[]): Promise<ServerProcess[]> {
    return Promise.all(envs.map((env) => this.start(env)));
  }

  /**
   * `n` Node servers on one fresh DATA_DIR, `env` on top. `warm` (the default): each one
   * first writes on a thread of its own (`warm-up-<i>`: libSQL connection and schema,
   * rollout folders), so none is still booting while the test races them.
   */
  async shared(n: number, env: Record<string, string> = {}, { warm = true } = {}): Promise<SharedServers> {
    if (n < 1) throw new Error("shared(n) starts at least one server");
    const data = this.dataDir();
    const serverEnv = { DATA_DIR: data.dir, ...env };
    const servers = await this.startMany(Array.from({ length: n }, () => serverEnv));
    if (warm) {
      const answers = await Promise.all(
        servers.map((s, i) =>
          http(s.url, "POST", `/v1/threads/warm-up-${i}/artifacts`, { artifactType: "warm", payload: i })
        ),
      );
      expect(answers.map((r) => r.status), "warm-up writes").toEqual(servers.map(() => 201));
    }
    return { ...data, env: serverEnv, servers: servers as SharedServers["servers"] };
  }

  /** What each server started since the last cleanup has printed so far. */
  outputs(): string[] {
    return this.#servers.map((server) => server.output());
  }

  async cleanup(): Promise<void> {
    const servers = this.#servers.splice(0);
    await Promise.all(servers.map((s) => s.kill()));
    for (const dir of this.#dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The suite's cluster: everything it started is stopped and removed after each test
 * (`"each"`), or once after the suite (`"all"`: for servers started in a beforeAll).
 * Called inside a describe, the hook belongs to that describe.
 */
export function useCluster(scope: "each" | "all" = "each"): Cluster {
  const cluster = new Cluster();
  if (scope === "each") afterEach(() => cluster.cleanup());
  else afterAll(() => cluster.cleanup());
  return cluster;
}

/** Deletes the libSQL file and its companions (what a lost cache volume leaves). */
export function deleteCacheFile(dbPath: string): void {
  for (const suffix of ["", "-wal", "-shm", "-journal"]) rmSync(dbPath + suffix, { force: true });
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

/**
 * The seqs the thread's commit files hold, read raw from its `commits/` folder (not the
 * Rollout's view): every file must be named by its first seq and continue the one
 * before it, from 1; anything else throws. `range(n)` is what an intact rollout of n
 * patches holds.
 */
export function committedSeqs(rolloutDir: string, threadId: string, tenant = TENANT): number[] {
  const dir = join(rolloutDir, "tenants", tenant, "threads", threadId, "commits");
  const seqs: number[] = [];
  for (const name of readdirSync(dir).sort()) {
    const commit = JSON.parse(readFileSync(join(dir, name), "utf8")) as {
      v: number;
      firstSeq: number;
      lastSeq: number;
      patches: { seq: number }[];
    };
    const expected = seqs.length + 1;
    if (commit.v !== 2 || name !== `${String(expected).padStart(12, "0")}.json` || commit.firstSeq !== expected) {
      throw new Error(`commit file ${name} does not continue seq ${seqs.length}`);
    }
    for (const [i, patch] of commit.patches.entries()) {
      if (patch.seq !== expected + i) throw new Error(`commit file ${name} skips a seq`);
    }
    if (commit.lastSeq !== expected + commit.patches.length - 1) {
      throw new Error(`commit file ${name} has a wrong lastSeq`);
    }
    seqs.push(...commit.patches.map((p) => p.seq));
  }
  return seqs;
}

/** The commit files of the thread (how many objects its writes took). */
export function commitFiles(rolloutDir: string, threadId: string, tenant = TENANT): string[] {
  return readdirSync(join(rolloutDir, "tenants", tenant, "threads", threadId, "commits")).sort();
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

/** Every patch of the thread, read from the folder through the real FsBlobStore + Rollout. */
export async function readRollout(rolloutDir: string, threadId: string, tenant = TENANT): Promise<ArtifactPatch[]> {
  const rollout = new Rollout(new FsBlobStore(rolloutDir));
  const patches = patchesOf(await rollout.listCommits(tenant, threadId, 0));
  if (patches.some((p) => p.op === "delete")) throw new Error(`${threadId} was deleted: use the rollout directly`);
  return patches as ArtifactPatch[];
}

/** The thread replayed from commit 1, ignoring compaction objects: the truth the cache must equal. */
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
  artifacts: readonly Artifact[];
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
export function expectedCacheRows(patches: readonly ArtifactPatch[]): CacheRows {
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
