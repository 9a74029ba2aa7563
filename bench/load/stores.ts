/**
 * One of the edge bench's stores in a process of its own: the test S3 server (its SigV4
 * proxy over objects in memory, or over s3rver with `--edge-s3=s3rver`) or the Hrana
 * libSQL server. In the bench's process they shared
 * one event loop with the load generator and each other, and the Hrana server's
 * synchronous SQLite work (a group's cache apply) held up the S3 puts queued behind it:
 * part of a put's time, the one thing a hot thread on Workers waits for, was this
 * machine's load rather than the distance being measured.
 *
 * Requests (one at a time, over IPC): `start` → its endpoint; `createBucket` (S3) → a
 * fresh bucket's name; `close` → the server closed and its files removed.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type HranaServer, startHranaServer } from "../../test/support/hrana-server.ts";
import { type S3rverHarness, startMemoryS3, startS3rver } from "../../test/support/s3rver.ts";
import { serveRequests } from "../lib/worker.ts";

export type StoresRequest =
  | { op: "start"; store: "libsql" }
  | { op: "start"; store: "s3"; backend: S3Backend }
  | { op: "createBucket" }
  | { op: "close" };

/**
 * What holds the S3 server's objects. `memory` (the default): the proxy answers from a
 * Map, so a put costs the injected distance and the proxy's checks. `s3rver`: the S3
 * adapter's test peer, which added ~5 ms to every put here (a HEAD and a PUT to a
 * second server, files written per object): the edge rows before 2026-12-06 ran on it.
 */
export type S3Backend = "memory" | "s3rver";

// The emulators' files live in memory where the machine has a tmpfs: what the bench
// measures is a store 20 ms away, not this machine's disk (whose file creation slows for
// minutes after the earlier scenarios' folders are deleted: bench/lib/fs-probe.ts).
const scratch = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();

let running: { s3: S3rverHarness } | { hrana: HranaServer; dir: string } | null = null;

serveRequests<StoresRequest, { endpoint: string } | { bucket: string } | { closed: true }>(async (request) => {
  switch (request.op) {
    case "start": {
      if (running) throw new Error("already started");
      if (request.store === "s3") {
        const s3 = request.backend === "memory" ? await startMemoryS3() : await startS3rver({ parent: scratch });
        running = { s3 };
        return { endpoint: s3.endpoint };
      }
      const dir = mkdtempSync(join(scratch, "artifacts-edge-libsql-"));
      const hrana = await startHranaServer({ path: join(dir, "cache.db") });
      running = { hrana, dir };
      return { endpoint: hrana.url };
    }
    case "createBucket": {
      if (!running || !("s3" in running)) throw new Error("not an S3 store");
      return { bucket: await running.s3.createBucket() };
    }
    case "close": {
      if (running && "s3" in running) await running.s3.close();
      if (running && "hrana" in running) {
        await running.hrana.close();
        rmSync(running.dir, { recursive: true, force: true });
      }
      running = null;
      return { closed: true };
    }
  }
});
