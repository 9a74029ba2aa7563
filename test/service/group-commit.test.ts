/**
 * Group commit: writes queued on one thread in one process are decided on one
 * context, committed as ONE object holding their consecutive patches (put-if-absent at
 * `commits/{head + 1}`), and applied to the cache in one batch. Real parts: the fs
 * store and a libSQL file.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import type { BlobStore, ListOptions, PutIfAbsentResult } from "../../src/blob/port.ts";
import { LibsqlCache } from "../../src/cache/libsql.ts";
import { parseThreadJson } from "../../src/model/artifact.ts";
import { materialize } from "../../src/model/materialize.ts";
import { type ArtifactPatch, patchesOf } from "../../src/model/patch.ts";
import { commitKey } from "../../src/rollout/keys.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { ArtifactService, type ArtifactWriteResult } from "../../src/service/artifact-service.ts";

const dirs: string[] = [];
const caches: LibsqlCache[] = [];
const services: ArtifactService[] = [];
afterEach(async () => {
  // Compaction runs after answers: let it finish before the folders go.
  for (const service of services.splice(0)) await service.idle();
  for (const cache of caches.splice(0)) cache.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function setup(store?: (fs: FsBlobStore) => BlobStore) {
  const dir = mkdtempSync(join(tmpdir(), "artifacts-group-"));
  dirs.push(dir);
  const fs = new FsBlobStore(join(dir, "rollouts"));
  const rollout = new Rollout(store ? store(fs) : fs);
  /** A service (a process) of its own cache over the shared rollout; `resident`: as the Workers sequencer runs it. */
  const newService = (name: string, options: { resident?: boolean } = {}) => {
    const cache = new LibsqlCache({
      connect: () => createClient({ url: `file:${join(dir, name)}`, concurrency: 1 }),
      local: true,
    });
    caches.push(cache);
    const service = new ArtifactService({
      rollout,
      cache,
      limits: { maxPayloadBytes: 65536, maxArtifactsPerThread: 1000 },
      backoff: async () => {},
      ...(options.resident ? { writeMode: { kind: "resident" as const, onDurable: () => {} } } : {}),
    });
    services.push(service);
    return { cache, service };
  };
  const patches = (threadId: string) =>
    rollout.listCommits("local", threadId, 0).then((commits) => patchesOf(commits) as ArtifactPatch[]);
  return { fs, rollout, newService, patches };
}

const create = (n: number) => ({ kind: "create" as const, artifactType: "note", identityKey: null, payload: { n } });

describe("group commit", () => {
  it("64 concurrent creates on one thread: each owns one seq of 1..64, in fewer commits and context reads than writes, and the cache equals the replay", async () => {
    const { rollout, newService, patches } = setup();
    const { cache, service } = newService("a.db");
    const contextReads = vi.spyOn(cache, "writeContext");
    const results = await Promise.all(
      Array.from({ length: 64 }, (_, n) => service.writeArtifact("local", "busy", create(n))),
    );
    expect(results.map((r) => r.thread.rolloutSeq).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 64 }, (_, i) => i + 1),
    );
    expect(contextReads.mock.calls.length).toBeLessThan(64);
    const commits = await rollout.listCommits("local", "busy", 0);
    // The first write goes alone; the 63 that queued behind it go as one group: two objects.
    expect(commits.map((c) => [c.firstSeq, c.lastSeq])).toEqual([[1, 1], [2, 64]]);
    const all = await patches("busy");
    for (const r of results) expect(all[r.thread.rolloutSeq - 1]?.artifact).toEqual(r.artifact);
    const replayed = materialize(null, all);
    expect(await cache.readThread("local", "busy")).toEqual(replayed);
    expect(await rollout.load("local", "busy")).toEqual(replayed);
  });

  it("writes that depend on each other in one group: identity retries, updates with If-Match and removes see the writes queued before them", async () => {
    const { newService } = setup();
    const { service } = newService("a.db");
    const first = await service.writeArtifact("local", "deps", {
      kind: "create",
      artifactType: "cfg",
      identityKey: "k",
      payload: 1,
    });
    const id = first.artifact.id;
    const settled = await Promise.allSettled([
      service.writeArtifact("local", "deps", {
        kind: "update",
        artifactId: id,
        payload: 2,
        precondition: { kind: "versions", versions: [1] },
      }),
      service.writeArtifact("local", "deps", {
        kind: "update",
        artifactId: id,
        payload: 3,
        precondition: { kind: "versions", versions: [1] },
      }),
      service.writeArtifact("local", "deps", { kind: "create", artifactType: "cfg", identityKey: "k", payload: 2 }),
      service.writeArtifact("local", "deps", {
        kind: "remove",
        artifactId: id,
        precondition: { kind: "versions", versions: [2] },
      }),
      service.writeArtifact("local", "deps", { kind: "create", artifactType: "cfg", identityKey: "k", payload: 9 }),
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
    const { newService, patches } = setup();
    const a = newService("a.db");
    const b = newService("b.db");
    const [fromA, fromB] = await Promise.all([
      Promise.all(Array.from({ length: 40 }, (_, n) => a.service.writeArtifact("local", "shared", create(n)))),
      Promise.all(Array.from({ length: 40 }, (_, n) => b.service.writeArtifact("local", "shared", create(100 + n)))),
    ]);
    const all: ArtifactWriteResult[] = [...fromA, ...fromB];
    expect(all.map((r) => r.thread.rolloutSeq).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 80 }, (_, i) => i + 1),
    );
    const shared = await patches("shared");
    expect(shared).toHaveLength(80);
    for (const r of all) expect(shared[r.thread.rolloutSeq - 1]?.artifact).toEqual(r.artifact);
    const replayed = materialize(null, shared);
    expect(parseThreadJson((await a.service.readThread("local", "shared", { consistency: "strong" })).thread)).toEqual(
      replayed,
    );
    expect(parseThreadJson((await b.service.readThread("local", "shared", { consistency: "strong" })).thread)).toEqual(
      replayed,
    );
  });

  it("a commit put that fails fails every write of its group (whether it landed is unknown), and nothing else; the next write lands at the next seq", async () => {
    let failing = "";
    const { newService, patches } = setup((fs) => new FailOnce(fs, () => failing));
    const { service } = newService("a.db");
    await service.writeArtifact("local", "flaky", create(-1));
    failing = commitKey("local", "flaky", 2);
    const settled = await Promise.allSettled(
      Array.from({ length: 8 }, (_, n) => service.writeArtifact("local", "flaky", create(n))),
    );
    expect(settled.map((s) => (s.status === "rejected" ? String(s.reason) : s.status))).toEqual(
      Array(8).fill("Error: injected put failure"),
    );
    const next = await service.writeArtifact("local", "flaky", create(8));
    expect(next.thread.rolloutSeq).toBe(2);
    expect((await patches("flaky")).map((p) => p.seq)).toEqual([1, 2]);
  });
});

describe("the head this process last committed", () => {
  it("decides plain creates without asking the cache, and a head another process moved is caught by the put: counts stay exact", async () => {
    const { rollout, newService, patches } = setup();
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
    services.push(serviceA, serviceB);
    const contextReads = vi.spyOn(a.cache, "writeContext");
    const first = await serviceA.writeArtifact("local", "heads", create(1));
    await serviceA.writeArtifact("local", "heads", create(2));
    await serviceA.writeArtifact("local", "heads", create(3));
    expect(contextReads).toHaveBeenCalledTimes(1);

    // Another process removes one: A's head (seq 3, 3 artifacts) is now stale.
    await serviceB.writeArtifact("local", "heads", {
      kind: "remove",
      artifactId: first.artifact.id,
      precondition: { kind: "any" },
    });
    const more = await Promise.all([4, 5, 6].map((n) => serviceA.writeArtifact("local", "heads", create(n))));
    expect(more.map((r) => r.thread.rolloutSeq).sort()).toEqual([5, 6, 7]);
    // 5 artifacts now: the next create is refused on the exact count, and so is B's.
    await expect(serviceA.writeArtifact("local", "heads", create(7))).rejects.toMatchObject({ code: "thread_full" });
    await expect(serviceB.writeArtifact("local", "heads", create(8))).rejects.toMatchObject({ code: "thread_full" });
    const state = materialize(null, await patches("heads"));
    expect(state?.artifacts).toHaveLength(5);
    expect(state?.seq).toBe(7);
  });
});

describe("contention without progress", () => {
  it("a group that loses every race gives up after maxAttempts rounds: 503 unavailable, nothing written", async () => {
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
      rollout: new Rollout(alwaysTaken),
      cache,
      limits: { maxPayloadBytes: 65536, maxArtifactsPerThread: 1000 },
      maxAttempts: 3,
      backoff: async () => {},
    });
    const settled = await Promise.allSettled([
      service.writeArtifact("local", "hot", create(1)),
      service.writeArtifact("local", "hot", create(2)),
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

  delete(key: string): Promise<void> {
    return this.inner.delete(key);
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
}

describe("resident mode (the Workers sequencer's writer)", () => {
  it("decides on the state it holds: the cache is read once to load the thread, never before a write; answers come before the cache has the commit", async () => {
    const { newService } = setup();
    const { cache: residentCache, service: resident } = newService("r.db", { resident: true });
    const reads = vi.spyOn(residentCache, "readThread");
    const contexts = vi.spyOn(residentCache, "writeContext");
    const first = await resident.writeArtifact("local", "held", create(1));
    const updated = await resident.writeArtifact("local", "held", {
      kind: "update",
      artifactId: first.artifact.id,
      payload: 2,
      precondition: { kind: "versions", versions: [1] },
    });
    const removed = await resident.writeArtifact("local", "held", {
      kind: "remove",
      artifactId: first.artifact.id,
      precondition: { kind: "any" },
    });
    expect([first.thread.rolloutSeq, updated.thread.rolloutSeq, removed.thread.rolloutSeq]).toEqual([1, 2, 3]);
    expect(reads).toHaveBeenCalledTimes(1);
    expect(contexts).not.toHaveBeenCalled();
    expect(await resident.writerHead("local", "held")).toBe(3);
    await resident.idle();
    expect((await residentCache.readThread("local", "held"))?.seq).toBe(3);
  });

  it("another writer of the thread costs a lost race and a catch-up, never a wrong decision", async () => {
    const { newService } = setup();
    const other = newService("other.db");
    const { service: resident } = newService("r.db", { resident: true });
    const a = await resident.writeArtifact("local", "shared-held", create(1));
    // Another process updates it behind the resident writer's back.
    await other.service.writeArtifact("local", "shared-held", {
      kind: "update",
      artifactId: a.artifact.id,
      payload: "theirs",
      precondition: { kind: "any" },
    });
    // The resident writer decides on version 1, loses the race, catches up and decides again: If-Match "1" now fails.
    await expect(
      resident.writeArtifact("local", "shared-held", {
        kind: "update",
        artifactId: a.artifact.id,
        payload: "mine",
        precondition: { kind: "versions", versions: [1] },
      }),
    ).rejects.toMatchObject({ code: "version_conflict" });
    const next = await resident.writeArtifact("local", "shared-held", create(3));
    expect(next.thread.rolloutSeq).toBe(3);
    expect(await resident.writerHead("local", "shared-held")).toBe(3);
  });
});
