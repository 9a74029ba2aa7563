/**
 * The commit log (format 2) on its own, over the memory store and through a store that
 * counts requests and plays each one as a round trip on vitest's fake clock:
 * - a commit is one object at commits/{firstSeq}, put-if-absent; a put whose response
 *   is lost is read back (ours: created; another's: exists; nothing there: the error);
 * - listing and following chain commits from a boundary and stop at a hole;
 * - the event log after any seq, at a commit boundary or inside one, before or after
 *   the compaction pointer;
 * - compaction objects are a shortcut only: a missing delta or a corrupt pointer makes a
 *   cold read replay the commits instead;
 * - compaction takes the tail this process created from memory (no commit read back),
 *   the same delta byte for byte as one read back; another writer's commit between
 *   breaks the run and the tail is read back;
 * - a cold read takes a bounded number of sequential round trips whatever the history
 *   length (fake-clock time / one round trip), and a 1,000-artifact thread updated 3,000
 *   times holds at most 3x its commits' bytes.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import type { BlobStore, ListOptions, PutIfAbsentResult } from "../../src/blob/port.ts";
import type { Artifact } from "../../src/model/artifact.ts";
import { materialize } from "../../src/model/materialize.ts";
import { type Commit, commitOf, type Patch, patchesOf } from "../../src/model/patch.ts";
import { Compactor } from "../../src/rollout/compaction.ts";
import {
  commitKey,
  commitsPrefix,
  compactionKey,
  deltaKey,
  deltasPrefix,
  snapshotsPrefix,
  threadPrefix,
} from "../../src/rollout/keys.ts";
import { Rollout } from "../../src/rollout/rollout.ts";

const T = "t";
const TH = "th";

/** A history of `commits` commits of `perCommit` patches: adds of `artifacts` artifacts, then updates round-robin. */
function history(commits: number, perCommit: number, artifacts: number, payloadBytes = 40): Commit[] {
  const out: Commit[] = [];
  const live: Artifact[] = [];
  let seq = 0;
  for (let c = 0; c < commits; c++) {
    const patches: Patch[] = [];
    for (let p = 0; p < perCommit; p++) {
      seq++;
      const at = new Date(Date.UTC(2026, 0, 1) + seq * 1000).toISOString();
      const text = "x".repeat(payloadBytes);
      if (live.length < artifacts) {
        const artifact: Artifact = {
          id: `a-${seq}`,
          threadId: TH,
          artifactType: "note",
          identityKey: null,
          payload: { seq, text },
          version: 1,
          createdAt: at,
          updatedAt: at,
          seq,
        };
        live.push(artifact);
        patches.push({ seq, threadId: TH, at, op: "add", artifact });
      } else {
        const index = seq % live.length;
        const current = live[index] as Artifact;
        const artifact: Artifact = {
          ...current,
          payload: { seq, text },
          version: current.version + 1,
          updatedAt: at,
          seq,
        };
        live[index] = artifact;
        patches.push({ seq, threadId: TH, at, op: "update", artifact });
      }
    }
    out.push(commitOf(patches));
  }
  return out;
}

async function write(rollout: Rollout, commits: Commit[]): Promise<void> {
  for (const commit of commits) expect(await rollout.append(T, commit)).toBe("created");
}

/** Passes calls through; counts them; optionally makes each one a round trip of `delayMs` on the (fake) clock. */
class CountingStore implements BlobStore {
  requests = 0;
  /** Every key read (get), in order. */
  gets: string[] = [];
  delayMs = 0;
  failPutsOnce: "after-landing" | "before-landing" | null = null;
  constructor(readonly inner: BlobStore) {}
  async #trip<V>(call: () => Promise<V>): Promise<V> {
    this.requests++;
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    return call();
  }
  get(key: string) {
    this.gets.push(key);
    return this.#trip(() => this.inner.get(key));
  }
  async putIfAbsent(key: string, body: string): Promise<PutIfAbsentResult> {
    const fail = this.failPutsOnce;
    this.failPutsOnce = null;
    if (fail === "before-landing") throw new Error("put failed");
    const result = await this.#trip(() => this.inner.putIfAbsent(key, body));
    if (fail === "after-landing") throw new Error("response lost");
    return result;
  }
  put(key: string, body: string) {
    return this.#trip(() => this.inner.put(key, body));
  }
  exists(key: string) {
    return this.#trip(() => this.inner.exists(key));
  }
  delete(key: string) {
    return this.#trip(() => this.inner.delete(key));
  }
  list(prefix: string, options?: ListOptions) {
    return this.#trip(() => this.inner.list(prefix, options));
  }
}

afterEach(() => {
  vi.useRealTimers();
});

describe("commits", () => {
  it("a commit is one object at the key of its first seq, created only if absent", async () => {
    const store = new MemoryBlobStore();
    const rollout = new Rollout(store);
    const [first, second] = history(2, 3, 10);
    await write(rollout, [first as Commit]);
    expect(await store.list(threadPrefix(T, TH))).toEqual([commitKey(T, TH, 1)]);
    expect(await rollout.append(T, { ...(second as Commit), firstSeq: 1 })).toBe("exists");
    await write(rollout, [second as Commit]);
    expect(await store.list(threadPrefix(T, TH))).toEqual([commitKey(T, TH, 1), commitKey(T, TH, 4)]);
    expect(await rollout.hasCommitAfter(T, TH, 3)).toBe(true);
    expect(await rollout.hasCommitAfter(T, TH, 6)).toBe(false);
  });

  it("a put whose response is lost is read back: holding our text it is created, another's it exists, nothing there the error stands", async () => {
    const store = new CountingStore(new MemoryBlobStore());
    const rollout = new Rollout(store);
    const [first, second] = history(2, 2, 10);
    store.failPutsOnce = "after-landing";
    expect(await rollout.append(T, first as Commit)).toBe("created");
    // Another writer's commit at seq 3, then our put of seq 3 loses its response.
    await store.inner.putIfAbsent(commitKey(T, TH, 3), "{}");
    store.failPutsOnce = "after-landing";
    expect(await rollout.append(T, second as Commit)).toBe("exists");
    store.failPutsOnce = "before-landing";
    await expect(rollout.append(T, { ...(second as Commit), firstSeq: 5, lastSeq: 6, patches: [] })).rejects.toThrow(
      "put failed",
    );
  });

  it("listing and following chain the commits after a boundary, and stop at a hole", async () => {
    const store = new MemoryBlobStore();
    const rollout = new Rollout(store);
    const commits = history(5, 2, 4);
    await write(rollout, commits);
    expect((await rollout.listCommits(T, TH, 0)).map((c) => c.firstSeq)).toEqual([1, 3, 5, 7, 9]);
    expect((await rollout.listCommits(T, TH, 4)).map((c) => c.firstSeq)).toEqual([5, 7, 9]);
    expect((await rollout.followCommits(T, TH, 6)).map((c) => c.firstSeq)).toEqual([7, 9]);
    expect(await rollout.listCommits(T, TH, 10)).toEqual([]);
    // A hole (commits 11-12 missing) ends the chain; what lies past it is never read.
    await store.putIfAbsent(commitKey(T, TH, 13), "not even JSON");
    expect((await rollout.listCommits(T, TH, 0)).map((c) => c.lastSeq)).toEqual([2, 4, 6, 8, 10]);
  });

  it("the event log after any seq: at a boundary, inside a commit, before and after the compaction pointer", async () => {
    const store = new MemoryBlobStore();
    const rollout = new Rollout(store);
    const commits = history(12, 3, 5);
    await write(rollout, commits.slice(0, 8));
    await new Compactor(rollout, { everyPatches: 6 }).compactOnce(T, TH);
    await write(rollout, commits.slice(8));
    const patches = patchesOf(commits);
    // A fresh Rollout: no boundaries remembered from the writes.
    const reader = new Rollout(store);
    for (let after = 0; after <= patches.length; after++) {
      expect((await reader.patchesAfter(T, TH, after, 1000)).map((p) => p.seq)).toEqual(
        patches.slice(after).map((p) => p.seq),
      );
      // With a limit, whole commits up to it (at least one patch, never a gap).
      const limited = await reader.patchesAfter(T, TH, after, 2);
      expect(limited.map((p) => p.seq)).toEqual(patches.slice(after, after + limited.length).map((p) => p.seq));
      if (after < patches.length) expect(limited.length).toBeGreaterThanOrEqual(Math.min(2, patches.length - after));
    }
  });

  it("compaction objects are only a shortcut: a missing snapshot or delta, or a corrupt pointer, makes a cold read replay the commits", async () => {
    const store = new MemoryBlobStore();
    const rollout = new Rollout(store);
    const commits = history(20, 2, 6);
    await write(rollout, commits);
    const compactor = new Compactor(rollout, { everyPatches: 8 });
    await compactor.compactOnce(T, TH);
    const truth = materialize(null, patchesOf(commits));
    expect((await rollout.loadParts(T, TH)).base?.seq).toBe(40);
    expect(await rollout.load(T, TH)).toEqual(truth);

    const derived = [...(await store.list(deltasPrefix(T, TH))), ...(await store.list(snapshotsPrefix(T, TH)))];
    expect(derived.length).toBeGreaterThan(0);
    const pointer = (await store.get(compactionKey(T, TH))) as string;
    // The objects the pointer names deleted (a copy of the rollout without them): nothing lost.
    const fresh = new MemoryBlobStore();
    for (const key of await store.list("tenants/", { limit: 10_000 })) {
      if (!derived.includes(key)) await fresh.put(key, (await store.get(key)) as string);
    }
    const withoutDeltas = new Rollout(fresh);
    expect((await withoutDeltas.loadParts(T, TH)).base).toBeNull();
    expect(await withoutDeltas.load(T, TH)).toEqual(truth);

    await fresh.put(compactionKey(T, TH), pointer.replace('"seq":40', '"seq":41'));
    expect(await withoutDeltas.compaction.readPointer(T, TH)).toBeNull();
    expect(await withoutDeltas.load(T, TH)).toEqual(truth);
  });
});

describe("compaction's tail", () => {
  const commitReads = (store: CountingStore) => store.gets.filter((key) => key.startsWith(commitsPrefix(T, TH)));

  /** A copy of the store: what another process sees. */
  async function copyOf(store: BlobStore): Promise<MemoryBlobStore> {
    const copy = new MemoryBlobStore();
    for (const key of await store.list("tenants/", { limit: 10_000 })) {
      await copy.put(key, (await store.get(key)) as string);
    }
    return copy;
  }

  it("the commits this rollout created are not read back, and give the same delta as the ones read back", async () => {
    const store = new CountingStore(new MemoryBlobStore());
    const writer = new Rollout(store);
    const commits = history(12, 2, 5);
    await write(writer, commits);
    const other = await copyOf(store.inner);
    store.gets = [];
    const ours = await new Compactor(writer, { everyPatches: 8 }).compactOnce(T, TH);
    expect(commitReads(store)).toEqual([]);
    expect(ours.delta).toMatchObject({ firstSeq: 1, lastSeq: 24 });
    // A process that did not write them reads them back, and writes the very same delta.
    const reading = new CountingStore(other);
    const theirs = await new Compactor(new Rollout(reading), { everyPatches: 8 }).compactOnce(T, TH);
    expect(commitReads(reading).length).toBeGreaterThanOrEqual(12);
    expect(theirs).toEqual(ours);
    expect(await other.get(deltaKey(T, TH, 1, 24))).toBe(await store.inner.get(deltaKey(T, TH, 1, 24)));
    expect(await writer.load(T, TH)).toEqual(materialize(null, patchesOf(commits)));
  });

  it("once compacted, the next pass starts from the commits created after it; what was compacted is let go", async () => {
    const store = new CountingStore(new MemoryBlobStore());
    const writer = new Rollout(store);
    const compactor = new Compactor(writer, { everyPatches: 4 });
    const commits = history(6, 2, 5);
    await write(writer, commits.slice(0, 3));
    await compactor.compactOnce(T, TH);
    expect(writer.recentCommits(T, TH)).toEqual([]);
    await write(writer, commits.slice(3));
    expect(writer.recentCommits(T, TH).map((c) => c.firstSeq)).toEqual([7, 9, 11]);
    store.gets = [];
    expect((await compactor.compactOnce(T, TH)).delta).toMatchObject({ firstSeq: 7, lastSeq: 12 });
    expect(commitReads(store)).toEqual([]);
    expect(await new Rollout(store.inner).load(T, TH)).toEqual(materialize(null, patchesOf(commits)));
  });

  it("another writer's commit between breaks the run: the tail is read back, the other's commit in it", async () => {
    const store = new CountingStore(new MemoryBlobStore());
    const writer = new Rollout(store);
    const another = new Rollout(store.inner);
    const commits = history(6, 2, 5);
    await write(writer, commits.slice(0, 3));
    await write(another, commits.slice(3, 4));
    await write(writer, commits.slice(4));
    expect(writer.recentCommits(T, TH).map((c) => c.firstSeq)).toEqual([9, 11]);
    store.gets = [];
    const result = await new Compactor(writer, { everyPatches: 4 }).compactOnce(T, TH);
    expect(result.delta).toMatchObject({ firstSeq: 1, lastSeq: 12 });
    expect(commitReads(store)).toContain(commitKey(T, TH, 7));
    expect(await new Rollout(store.inner).load(T, TH)).toEqual(materialize(null, patchesOf(commits)));
  });
});

describe("a cold read at any history length", () => {
  /** Sequential round trips of a cold read: the fake-clock time it takes over the time of one. */
  async function coldReadRoundTrips(
    commits: Commit[],
    everyPatches: number,
  ): Promise<{ trips: number; requests: number }> {
    const store = new CountingStore(new MemoryBlobStore());
    const rollout = new Rollout(store);
    const compactor = new Compactor(rollout, { everyPatches });
    let since = 0;
    for (const commit of commits) {
      expect(await rollout.append(T, commit)).toBe("created");
      since += commit.patches.length;
      if (compactor.isDue(commit)) await compactor.compactOnce(T, TH);
    }
    vi.useFakeTimers();
    store.delayMs = 100;
    store.requests = 0;
    const started = Date.now();
    let doneAt = Number.NaN;
    const loading = new Rollout(store).load(T, TH).finally(() => (doneAt = Date.now()));
    await vi.advanceTimersByTimeAsync(60_000);
    const state = await loading;
    expect(state).toEqual(materialize(null, patchesOf(commits)));
    expect(since).toBe(patchesOf(commits).length);
    return { trips: (doneAt - started) / 100, requests: store.requests };
  }

  it("takes the same few sequential round trips for 1,000 commits as for 10,000", async () => {
    const small = await coldReadRoundTrips(history(1000, 1, 100), 64);
    const large = await coldReadRoundTrips(history(10_000, 1, 100), 64);
    // The pointer; then the snapshot, its deltas and the listing of the tail; then the tail.
    expect(large.requests).toBeGreaterThan(0);
    expect(small.trips).toBeLessThanOrEqual(3);
    expect(large.trips).toBeLessThanOrEqual(3);
  });

  it("a 1,000-artifact thread updated 3,000 times holds at most 3x its commits' bytes", async () => {
    const store = new MemoryBlobStore();
    const rollout = new Rollout(store);
    const compactor = new Compactor(rollout, { everyPatches: 64 });
    // Groups of 1 to 8 patches, ~1 KiB payloads.
    const commits: Commit[] = [];
    let next = 0;
    for (const commit of history(4000, 1, 1000, 1000)) {
      const size = 1 + (next++ % 8);
      const last = commits[commits.length - 1];
      if (last && last.patches.length < size) {
        commits[commits.length - 1] = commitOf([...last.patches, ...commit.patches]);
      } else commits.push(commit);
    }
    for (const commit of commits) {
      expect(await rollout.append(T, commit)).toBe("created");
      if (compactor.isDue(commit)) await compactor.compactOnce(T, TH);
    }
    const bytes = async (prefix: string) => {
      let sum = 0;
      for (const key of await store.list(prefix, { limit: 100_000 })) {
        sum += new TextEncoder().encode((await store.get(key)) as string).byteLength;
      }
      return sum;
    };
    const commitBytes = await bytes(`${threadPrefix(T, TH)}commits/`);
    const total = await bytes(threadPrefix(T, TH));
    expect(total / commitBytes).toBeLessThanOrEqual(3);
    expect(await rollout.load(T, TH)).toEqual(materialize(null, patchesOf(commits)));
  });
});
