/**
 * The stores of runtimes with a filesystem and the native libSQL client (Node and
 * Deno), from the configuration: shared by the Node server (`node.ts`), the `rebuild`
 * command (`rebuild.ts`) and the Deno functions (`deno.ts`), so all of them open
 * exactly the same rollout and the same libSQL database from the same environment.
 */
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { createClient } from "@libsql/client";
import type { SqlClient } from "../cache/libsql.ts";
import process from "node:process";
import { FsBlobStore } from "../blob/fs.ts";
import { nodeFsOps } from "../blob/fs-ops.ts";
import { inProcessCommitWriter } from "../blob/fs-commit-batch.ts";
import { CommitThread } from "../blob/fs-commit-thread.ts";
import { MemoryBlobStore } from "../blob/memory.ts";
import type { BlobStore } from "../blob/port.ts";
import type { Config, Env } from "./config.ts";
import { LibsqlFileClient } from "./libsql-file.ts";
import { s3FromConfig } from "./s3-from-config.ts";
import { firstSeqOfCommitKey } from "../rollout/keys.ts";

export function blobStoreFor(
  config: Config,
  env: Env,
  options: {
    /** Asked at the first commit: whether the journal's flushes run on a thread of their own (blob/fs-commit-thread.ts). */
    commitsOnThread?: () => boolean;
  } = {},
): BlobStore {
  switch (config.blobStore.kind) {
    case "fs": {
      const commitsOnThread = options.commitsOnThread;
      // Commits share one fdatasync of the process's journal (src/blob/fs-journal.ts).
      return new FsBlobStore(resolve(config.blobStore.dir), nodeFsOps, {
        journaled: (key) => firstSeqOfCommitKey(key) !== null,
        pid: process.pid,
        isAlive: processAlive,
        unref: (timer) => (timer as { unref?: () => void }).unref?.(),
        ...(commitsOnThread
          ? {
            commitWriter: () => {
              const inProcess = inProcessCommitWriter(nodeFsOps);
              return commitsOnThread() ? new CommitThread(inProcess) : inProcess;
            },
          }
          : {}),
      });
    }
    case "memory":
      return new MemoryBlobStore();
    case "s3":
      return s3FromConfig(config.blobStore, env);
  }
}

/**
 * Opens a libSQL client for `config.libsqlUrl`, making the folder a `file:` URL points
 * into. A file gets the prepared-statement client (`libsql-file.ts`), with its WAL
 * checkpointed from a worker thread when `checkpointEveryMs` is given (Node); `libsql://` and
 * `http(s)://` get @libsql/client. Called on first use, so a folder that cannot be
 * made counts as the cache being down, not as a failed start.
 */
export function libsqlConnector(
  config: Config,
  options: {
    checkpointEveryMs?: number;
    /** Asked at each connect: whether the file's writes go to a worker thread (libsql-writer.ts). */
    writesOnWorker?: () => boolean;
  } = {},
): () => SqlClient {
  const url = config.libsqlUrl;
  return () => {
    if (url.startsWith("file:")) {
      const path = resolve(url.slice("file:".length));
      mkdirSync(dirname(path), { recursive: true });
      // Several processes may share one file: wait for the write lock instead of failing.
      return new LibsqlFileClient(path, {
        busyTimeoutMs: BUSY_TIMEOUT_MS,
        ...(options.checkpointEveryMs === undefined ? {} : { checkpointEveryMs: options.checkpointEveryMs }),
        writesOnWorker: options.writesOnWorker?.() ?? false,
      });
    }
    return createClient({ url, ...(config.libsqlAuthToken ? { authToken: config.libsqlAuthToken } : {}) });
  };
}

const BUSY_TIMEOUT_MS = 5000;

/** Whether a process runs (signal 0 checks without sending; EPERM: it runs, as another user). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
}
