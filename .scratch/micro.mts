import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import Database from "libsql";
import { LibsqlCache } from "/work/main/src/cache/libsql.ts";
import type { Patch } from "/work/main/src/model/patch.ts";

const dir = mkdtempSync(join(tmpdir(), "micro-"));
const FILLER = "lorem ipsum dolor sit amet ".repeat(40).slice(0, 960);
function patch(th: string, seq: number): Patch {
  return { v: 1, seq, threadId: th, at: new Date().toISOString(), op: "add", artifact: { id: crypto.randomUUID(), threadId: th, artifactType: "n", identityKey: null, payload: { text: FILLER }, version: 1, createdAt: "x", updatedAt: "x", seq } };
}
async function run(name: string, connect: () => any) {
  const cache = new LibsqlCache({ connect, local: true });
  await cache.seq("local", "x");
  const N = 3000; const threads = 64; const seqs = new Array(threads).fill(0);
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const th = i % threads;
    await cache.writeContext("local", `t${th}`, [{ by: "identity", artifactType: "n", identityKey: null }]);
    await cache.apply("local", [patch(`t${th}`, ++seqs[th])]);
  }
  console.log(name, ((performance.now() - t0) / N).toFixed(3), "ms per create (context + apply)");
}
await run("client", () => createClient({ url: `file:${join(dir, "a.db")}`, concurrency: 1 }));
import { LibsqlFileClient } from "/work/main/src/runtime/libsql-file.ts";
await run("file client", () => new LibsqlFileClient(join(dir, "b.db"), { busyTimeoutMs: 5000 }));
await run("client again", () => createClient({ url: `file:${join(dir, "c.db")}`, concurrency: 1 }));
await run("file client again", () => new LibsqlFileClient(join(dir, "d.db"), { busyTimeoutMs: 5000 }));
