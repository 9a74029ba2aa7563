// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
/**
 * The web-standard core of `rebuild` (src/service/rebuild.ts), in process over a real
 * libSQL file and a real fs rollout, for the failure paths the CLI test cannot stage:
 * the rollout store down, one thread's patch unreadable, the cache lost mid-run.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import { LibsqlCache } from "../../src/cache/libsql.ts";
import type { ArtifactCache } from "../../src/cache/port.ts";
import { commitKey } from "../../src/rollout/keys.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { ArtifactService } from "../../src/service/artifact-service.ts";
import { RebuildAbortedError, rebuildCache, type RebuildEvent } from "../../src/service/rebuild.ts";
import { range } from "../support/cluster.ts";
import { FaultyBlobStore } from "../support/faulty-blob-store.ts";
import { cachedSeqs } from "../support/ops.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

const LIMITS = { maxPayloadBytes: 65536, maxArtifactsPerThread: 1000 };

/** A cache that can be switched off: every call fails while `down`. */
function switchable(inner: ArtifactCache): ArtifactCache & { down: boolean } {
  const cache = { down: false } as ArtifactCache & { down: boolean };
  for (
    const name of [
      "apply",
      "install",
      "seq",
      "readThread",
      "writeContext",
      "getArtifact",
      "listThreads",
      "events",
      "ping",
    ] as const
  ) {
    (cache as any)[name] = (
      ...args: unknown[]
    ) => (cache.down ? Promise.reject(new Error("cache switched off")) : (inner[name] as any)(...args));
  }
  cache.close = () => inner.close();
  return cache;
}

/** Threads t-1..t-n with `patches` creates each, written by a service whose cache is then thrown away. */
async function setup(threads: number, patches: number) {
  const dir = mkdtempSync(join(tmpdir(), "rebuild-core-"));
  const dbPath = join(dir, "artifacts.db");
  const store = new FaultyBlobStore(new FsBlobStore(join(dir, "rollouts")), 1);
  const writerCache = new LibsqlCache({
    connect: () => createClient({ url: `file:${join(dir, "scratch.db")}` }),
    local: true,
  });
  const writer = new ArtifactService({
    rollout: new Rollout(store),
    cache: writerCache,
    limits: LIMITS,
  });
  for (const t of range(threads)) {
    for (const i of range(patches)) {
      await writer.write("local", `t-${t}`, {
        kind: "create",
        artifactType: "note",
        identityKey: null,
        payload: { i },
      });
    }
  }
  writerCache.close();
  const cache = switchable(new LibsqlCache({ connect: () => createClient({ url: `file:${dbPath}` }), local: true }));
  const rollout = new Rollout(store);
  const service = new ArtifactService({
    rollout,
    cache,
    limits: LIMITS,
  });
  const deps = { service, rollout, cache };
  cleanups.push(() => {
    cache.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { store, cache, deps, dbPath };
}

describe("rebuildCache failure paths", () => {
  it("the rollout store down: aborted before touching anything, naming the rollout", async () => {
    const { store, deps, dbPath } = await setup(2, 2);
    store.configure({ down: true });
    const error = await rebuildCache(deps).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RebuildAbortedError);
    expect((error as RebuildAbortedError).store).toBe("rollout");
    expect((error as Error).message).toMatch(
      /^the rollout store is unreachable: InjectedFault: injected failure: list tenants\//,
    );
    expect(await cachedSeqs(dbPath)).toEqual({});
  });

  it("one thread with an unreadable commit fails alone; the others are rebuilt and the run reports it", async () => {
    const { store, deps, dbPath } = await setup(3, 4);
    await store.inner.put(commitKey("local", "t-2", 4), "{ not json");
    const events: RebuildEvent[] = [];
    const summary = await rebuildCache(deps, { onEvent: (e) => events.push(e) });
    expect(summary).toMatchObject({ threads: 3, repaired: 2, atHead: 0, applied: 8 });
    expect(summary.failed).toHaveLength(1);
    expect(summary.failed[0]).toMatchObject({ tenant: "local", threadId: "t-2" });
    expect(events.filter((e) => e.kind === "failed").map((e) => (e as { threadId: string }).threadId)).toEqual(["t-2"]);
    // t-2's tail is read before anything is written: it is left out whole, not half in.
    expect(await cachedSeqs(dbPath)).toEqual({ "local/t-1": 4, "local/t-3": 4 });
  });

  it("the cache lost mid-run: aborted with the cache named, what was done stays done, the next run finishes", async () => {
    const { cache, deps, dbPath } = await setup(6, 2);
    const seen: RebuildEvent[] = [];
    const error = await rebuildCache(deps, {
      concurrency: 1,
      onEvent: (event) => {
        seen.push(event);
        if (event.kind === "thread" && event.done === 2) cache.down = true;
      },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RebuildAbortedError);
    expect((error as RebuildAbortedError).store).toBe("cache");
    expect((error as Error).message).toContain("cache switched off");
    // It stopped at the first thread that failed instead of failing every thread.
    expect(seen.filter((e) => e.kind === "thread")).toHaveLength(2);
    expect(seen.filter((e) => e.kind === "failed")).toHaveLength(0);
    expect(await cachedSeqs(dbPath)).toEqual({ "local/t-1": 2, "local/t-2": 2 });

    cache.down = false;
    const resumed = await rebuildCache(deps);
    expect(resumed).toMatchObject({ threads: 6, repaired: 4, atHead: 2, applied: 8, failed: [] });
    expect(await cachedSeqs(dbPath)).toEqual(Object.fromEntries(range(6).map((t) => [`local/t-${t}`, 2])));
  });
});
