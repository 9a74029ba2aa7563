/**
 * Helpers for the operations suites (test/ops): the `rebuild` command as a real child
 * process and a whole-database dump of the libSQL file.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createClient } from "@libsql/client";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export interface RebuildRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout split into lines, without the empty last one. */
  lines: string[];
}

/**
 * `node src/runtime/rebuild.ts ...args` (what `npm run rebuild` runs) with
 * `env` on top of this process's environment; stdout is a pipe, so not a TTY.
 * `killAfterLines`: SIGKILL the child as soon as that many stdout lines have arrived.
 */
export function runRebuildProcess(
  env: Record<string, string>,
  args: string[] = [],
  options: { killAfterLines?: number } = {},
): Promise<RebuildRun> {
  const child = spawn(process.execPath, ["src/runtime/rebuild.ts", ...args], {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    if (
      options.killAfterLines !== undefined && child.exitCode === null &&
      stdout.split("\n").length - 1 >= options.killAfterLines
    ) {
      child.kill("SIGKILL");
    }
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => {
      const lines = stdout.split("\n");
      if (lines[lines.length - 1] === "") lines.pop();
      resolve({ code, signal, stdout, stderr, lines });
    });
  });
}

/** Every row of every cache table, in primary-key order: two dumps are equal iff the database content is. */
export async function dumpCache(dbPath: string): Promise<Record<string, unknown[]>> {
  const client = createClient({ url: `file:${dbPath}` });
  try {
    const [threads, artifacts, events] = await client.batch(
      [
        "SELECT * FROM threads ORDER BY tenant, thread_id",
        "SELECT * FROM artifacts ORDER BY tenant, thread_id, id",
        "SELECT * FROM events ORDER BY tenant, thread_id, seq",
      ],
      "read",
    );
    const plain = (rows: readonly object[]) => rows.map((row) => ({ ...row }));
    return {
      threads: plain(threads?.rows ?? []),
      artifacts: plain(artifacts?.rows ?? []),
      events: plain(events?.rows ?? []),
    };
  } finally {
    client.close();
  }
}

/** The cached seq of every thread in the file, keyed `tenant/threadId`. */
export async function cachedSeqs(dbPath: string): Promise<Record<string, number>> {
  const client = createClient({ url: `file:${dbPath}` });
  try {
    const result = await client.execute("SELECT tenant, thread_id, seq FROM threads ORDER BY tenant, thread_id");
    return Object.fromEntries(
      result.rows.map((row) => [`${String(row.tenant)}/${String(row.thread_id)}`, Number(row.seq)]),
    );
  } finally {
    client.close();
  }
}
