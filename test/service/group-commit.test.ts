/**
 * Group commit: writes queued on one thread in one process are decided on one
 * context, appended as consecutive seqs with one ordered put-if-absent series and
 * applied to the cache in one batch. Real parts: the fs store (temp files fsynced
 * together, linked in order) and a libSQL file.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import type { BlobEntry, BlobStore, InOrderResult, ListOptions, PutIfAbsentResult } from "../../src/blob/port.ts";
import { LibsqlCache } from "../../src/cache/libsql.ts";
import { parseThreadJson } from "../../src/model/artifact.ts";
import { materialize } from "../../src/model/materialize.ts";
import { parseSnapshot } from "../../src/model/patch.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { ArtifactService, type WriteResult } from "../../src/service/artifact-service.ts";

const dirs: string[] = [];
const caches: LibsqlCache[] = [];
afterEach(() => {
  for (const cache of caches.splice(0)) cache.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function setup(store?: (fs: FsBlobStore) => BlobStore) {
  const dir = mkdtempSync(join(tmpdir(), "artifacts-group-"));
  dirs.push(dir);
  const fs = new FsBlobStore(join(dir, "rollouts"));
  const rollout = new Rollout(store ? store(fs) : fs, { snapshotEvery: 10 });
  const newService = (name: string) => {
    const cache = new LibsqlCache({
      connect: () => createClient({ url: `file:${join(dir, name)}`, concurrency: 1 }),
      local: true,
    });
    caches.push(cache);
    return {
      cache,
      service: new ArtifactService({
        rollout,
        cache,
        limits: { maxPayloadBytes: 65536, maxArtifactsPerThread: 1000 },
        backoff: async () => {},
      }),
    };
  };
  return { fs, rollout, newService };
}

const create = (n: number) => ({ kind: "create" as const, artifactType: "note", identityKey: null, payload: { n } });

describe("group commit", () => {
  it("64 concurrent creates on one thread: each owns one seq of 1..64, in fewer context reads than writes, and the cache equals the replay", async () => {
    const { rollout, newService } = setup();
    const { cache, service } = newService("a.db");
    const contextReads = vi.spyOn(cache, "writeContext");
    const results = await Promise.all(Array.from({ length: 64 }, (_, n) => service.write("local", "busy", create(n))));
    expect(results.map((r) => r.thread.rolloutSeq).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 64 }, (_, i) => i + 1),
    );
    expect(contextReads.mock.calls.length).toBeLessThan(64);
    const patches = await rollout.readPatches("local", "busy", 0);
    expect(patches).toHaveLength(64);
    for (const r of results) expect(patches[r.thread.rolloutSeq - 1]?.artifact).toEqual(r.artifact);
    const replayed = materialize(null, patches);
    expect(await cache.readThread("local", "busy")).toEqual(replayed);
    // A group ends at a snapshot seq, so there is one at every multiple of 10, each the state at its seq.
    const snapshots = await rollout.store.list("tenants/local/threads/busy/snapshots/");
    expect(snapshots.map((key) => Number(key.split("/").pop()?.slice(0, 12)))).toEqual([10, 20, 30, 40, 50, 60]);
    for (const key of snapshots) {
      const { v: _v, ...snapshot } = parseSnapshot((await rollout.store.get(key)) as string, key);
      expect(snapshot).toEqual(materialize(null, patches.slice(0, snapshot.seq)));
    }
    expect(await rollout.load("local", "busy")).toEqual(replayed);
  });

  it("writes that depend on each other in one group: identity retries, updates with If-Match and removes see the writes queued before them", async () => {
    const { newService } = setup();
    const { service } = newService("a.db");
    const first = await service.write("local", "deps", {
      kind: "create",
      artifactType: "cfg",
      identityKey: "k",
      payload: 1,
    });
    const id = first.artifact.id;
    const settled = await Promise.allSettled([
      service.write("local", "deps", {
        kind: "update",
        artifactId: id,
        payload: 2,
        precondition: { kind: "versions", versions: [1] },
      }),
      service.write("local", "deps", {
        kind: "update",
        artifactId: id,
        payload: 3,
        precondition: { kind: "versions", versions: [1] },
      }),
      service.write("local", "deps", { kind: "create", artifactType: "cfg", identityKey: "k", payload: 2 }),
      service.write("local", "deps", {
        kind: "remove",
        artifactId: id,
        precondition: { kind: "versions", versions: [2] },
      }),
      service.write("local", "deps", { kind: "create", artifactType: "cfg", identityKey: "k", payload: 9 }),
    ]);
    const summary = settled.map((
      s,
    ) => (s.status === "fulfilled"
      ? `${s.value.op}@${s.value.thread.rolloutSeq}`
      : (s.reason as { code: string }).code)
    );
    expect(summary).toEqual(["update@2", "version_conflict", "none@2", "remove@3", "add@4"]);
  });

  it("another process winning a seq in the middle: the writes behind it are decided again, nothing is lost or duplicated", async () => {
    const { rollout, newService } = setup();
    const a = newService("a.db");
    const b = newService("b.db");
    const [fromA, fromB] = await Promise.all([
      Promise.all(Array.from({ length: 40 }, (_, n) => a.service.write("local", "shared", create(n)))),
      Promise.all(Array.from({ length: 40 }, (_, n) => b.service.write("local", "shared", create(100 + n)))),
    ]);
    const all: WriteResult[] = [...fromA, ...fromB];
    expect(all.map((r) => r.thread.rolloutSeq).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 80 }, (_, i) => i + 1),
    );
    const patches = await rollout.readPatches("local", "shared", 0);
    expect(patches).toHaveLength(80);
    for (const r of all) expect(patches[r.thread.rolloutSeq - 1]?.artifact).toEqual(r.artifact);
    const replayed = materialize(null, patches);
    expect(parseThreadJson((await a.service.readThread("local", "shared", { consistency: "strong" })).thread)).toEqual(
      replayed,
    );
    expect(parseThreadJson((await b.service.readThread("local", "shared", { consistency: "strong" })).thread)).toEqual(
      replayed,
    );
  });

  it("a put that fails in the middle of a group fails only its own write; the writes behind it land at the next seqs", async () => {
    let failing = "";
    const { rollout, newService } = setup((fs) => new FailOnce(fs, () => failing));
    const { service } = newService("a.db");
    await service.write("local", "flaky", create(-1));
    failing = "tenants/local/threads/flaky/patches/000000000005.json";
    const settled = await Promise.allSettled(
      Array.from({ length: 8 }, (_, n) => service.write("local", "flaky", create(n))),
    );
    const rejected = settled.filter((s) => s.status === "rejected");
    expect(rejected).toHaveLength(1);
    expect(String((rejected[0] as PromiseRejectedResult).reason)).toMatch(/injected/);
    const seqs = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value.thread.rolloutSeq] : [])).sort((x, y) =>
      x - y
    );
    expect(seqs).toEqual([2, 3, 4, 5, 6, 7, 8]);
    expect((await rollout.readPatches("local", "flaky", 0)).map((p) => p.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });
});

describe("the head this process last committed", () => {
  it("decides plain creates without asking the cache, and a head another process moved is caught by the put: counts stay exact", async () => {
    const { rollout, newService } = setup();
    const a = newService("a.db");
    const b = newService("b.db");
    const limited = (cache: LibsqlCache) =>
      new ArtifactService({
        rollout,
        cache,
        limits: { maxPayloadBytes: 65536, maxArtifactsPerThread: 5 },
        backoff: async () => {},
      });
    const serviceA = limited(a.cache);
    const serviceB = limited(b.cache);
    const contextReads = vi.spyOn(a.cache, "writeContext");
    const first = await serviceA.write("local", "heads", create(1));
    await serviceA.write("local", "heads", create(2));
    await serviceA.write("local", "heads", create(3));
    expect(contextReads).toHaveBeenCalledTimes(1);

    // Another process removes one: A's head (seq 3, 3 artifacts) is now stale.
    await serviceB.write("local", "heads", {
      kind: "remove",
      artifactId: first.artifact.id,
      precondition: { kind: "any" },
    });
    const more = await Promise.all([4, 5, 6].map((n) => serviceA.write("local", "heads", create(n))));
    expect(more.map((r) => r.thread.rolloutSeq).sort()).toEqual([5, 6, 7]);
    // 5 artifacts now: the next create is refused on the exact count, and so is B's.
    await expect(serviceA.write("local", "heads", create(7))).rejects.toMatchObject({ code: "thread_full" });
    await expect(serviceB.write("local", "heads", create(8))).rejects.toMatchObject({ code: "thread_full" });
    const state = materialize(null, await rollout.readPatches("local", "heads", 0));
    expect(state?.artifacts).toHaveLength(5);
    expect(state?.seq).toBe(7);
  });
});

describe("contention without progress", () => {
  it("a group that loses every race gives up after maxAttempts fruitless rounds: 503 unavailable, nothing written", async () => {
    const dir = mkdtempSync(join(tmpdir(), "artifacts-group-"));
    dirs.push(dir);
    const fs = new FsBlobStore(join(dir, "rollouts"));
    const alwaysTaken = new AlwaysTaken(fs);
    const cache = new LibsqlCache({
      connect: () => createClient({ url: `file:${join(dir, "a.db")}`, concurrency: 1 }),
      local: true,
    });
    caches.push(cache);
    const service = new ArtifactService({
      rollout: new Rollout(alwaysTaken, { snapshotEvery: 10 }),
      cache,
      limits: { maxPayloadBytes: 65536, maxArtifactsPerThread: 1000 },
      maxAttempts: 3,
      backoff: async () => {},
    });
    const settled = await Promise.allSettled([
      service.write("local", "hot", create(1)),
      service.write("local", "hot", create(2)),
    ]);
    for (const s of settled) {
      expect(s.status).toBe("rejected");
      expect((s as PromiseRejectedResult).reason).toMatchObject({ code: "unavailable", retryAfterSeconds: 1 });
    }
    expect(alwaysTaken.tries).toBeGreaterThanOrEqual(3);
    expect(await fs.list("tenants/")).toEqual([]);
  });
});

/** An fs store passed through; the stores below change only what they name. */
class Delegating implements BlobStore {
  constructor(protected readonly inner: FsBlobStore) {}

  get(key: string): Promise<string | null> {
    return this.inner.get(key);
  }

  putIfAbsent(key: string, body: string): Promise<PutIfAbsentResult> {
    return this.inner.putIfAbsent(key, body);
  }

  put(key: string, body: string): Promise<void> {
    return this.inner.put(key, body);
  }

  exists(key: string): Promise<boolean> {
    return this.inner.exists(key);
  }

  list(prefix: string, options?: ListOptions): Promise<string[]> {
    return this.inner.list(prefix, options);
  }
}

/** Every put-if-absent finds its key taken (by a writer whose patch never shows): no round can make progress. */
class AlwaysTaken extends Delegating {
  tries = 0;

  override async putIfAbsent(): Promise<PutIfAbsentResult> {
    this.tries += 1;
    return "exists";
  }
}

/** The first put of the key `failing()` names throws without writing. */
class FailOnce extends Delegating {
  readonly #failing: () => string;
  #failed = false;

  constructor(inner: FsBlobStore, failing: () => string) {
    super(inner);
    this.#failing = failing;
  }

  override async putIfAbsent(key: string, body: string): Promise<PutIfAbsentResult> {
    if (!this.#failed && key === this.#failing()) {
      this.#failed = true;
      throw new Error("injected put failure");
    }
    return this.inner.putIfAbsent(key, body);
  }

  async putIfAbsentInOrder(entries: readonly BlobEntry[]): Promise<InOrderResult> {
    const at = this.#failed ? -1 : entries.findIndex((e) => e.key === this.#failing());
    if (at < 0) return this.inner.putIfAbsentInOrder(entries);
    const before = await this.inner.putIfAbsentInOrder(entries.slice(0, at));
    if (before.stop !== "end") return before;
    this.#failed = true;
    return { created: before.created, stop: "error", error: new Error("injected put failure") };
  }
}
