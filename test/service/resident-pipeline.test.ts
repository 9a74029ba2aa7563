/**
 * The resident writer (the Workers sequencer) overlaps what is independent between a
 * thread's groups: once group N's commit is durable, its state in memory and its place
 * in the cache's chain are set and its events pushed, group N+1 is decided and put while
 * N still answers its writers, its cache apply runs and its compaction is scheduled.
 * What must still hold, checked here with every store call held by the test:
 * - a write is answered only once its commit is durable;
 * - commits are put one at a time, in seq order, each at the key after the last;
 * - the cache gets the commits in seq order, whatever order the applies were asked in
 *   and however long one takes (a contiguous prefix of the rollout);
 * - events are pushed in seq order, each commit once.
 */
import { createClient } from "@libsql/client";
import { afterEach, describe, expect, it } from "vitest";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import type { BlobStore, ListOptions, PutIfAbsentResult } from "../../src/blob/port.ts";
import { LibsqlCache } from "../../src/cache/libsql.ts";
import type { IdempotencyMark } from "../../src/model/idempotency.ts";
import type { Commit } from "../../src/model/patch.ts";
import { firstSeqOfCommitKey } from "../../src/rollout/keys.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { ArtifactService, type WriteResult } from "../../src/service/artifact-service.ts";
import { waitFor } from "../support/wait.ts";

/** A gate the test opens: everything that waits on it goes on together. */
class Gate {
  #open = false;
  #waiters: (() => void)[] = [];

  get isOpen(): boolean {
    return this.#open;
  }

  wait(): Promise<void> {
    if (this.#open) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  open(): void {
    this.#open = true;
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

/** Memory, with every commit put and every commit read held until the test opens its gate; puts recorded in order. */
class HeldStore implements BlobStore {
  readonly localReads = true;
  readonly #inner = new MemoryBlobStore();
  readonly puts: number[] = [];
  readonly putGates = new Map<number, Gate>();
  readonly getGates = new Map<number, Gate>();

  gateOf(gates: Map<number, Gate>, seq: number): Gate {
    let gate = gates.get(seq);
    if (!gate) gates.set(seq, gate = new Gate());
    return gate;
  }

  async putIfAbsent(key: string, body: string): Promise<PutIfAbsentResult> {
    const seq = firstSeqOfCommitKey(key);
    if (seq !== null) {
      this.puts.push(seq);
      await this.gateOf(this.putGates, seq).wait();
    }
    return this.#inner.putIfAbsent(key, body);
  }

  async get(key: string): Promise<string | null> {
    const seq = firstSeqOfCommitKey(key);
    if (seq !== null && this.getGates.has(seq)) await this.gateOf(this.getGates, seq).wait();
    return this.#inner.get(key);
  }

  put(key: string, body: string): Promise<void> {
    return this.#inner.put(key, body);
  }

  exists(key: string): Promise<boolean> {
    return this.#inner.exists(key);
  }

  delete(key: string): Promise<void> {
    return this.#inner.delete(key);
  }

  list(prefix: string, options?: ListOptions): Promise<string[]> {
    return this.#inner.list(prefix, options);
  }
}

const caches: LibsqlCache[] = [];
const services: ArtifactService[] = [];
afterEach(async () => {
  for (const service of services.splice(0)) await service.idle();
  for (const cache of caches.splice(0)) cache.close();
});

function setup() {
  const store = new HeldStore();
  const rollout = new Rollout(store);
  const cache = new LibsqlCache({ connect: () => createClient({ url: ":memory:" }), local: true });
  caches.push(cache);
  // Every cache apply held until the test opens the gate of its commit.
  const applyGates = new Map<number, Gate>();
  const applied: number[][] = [];
  const apply = cache.apply.bind(cache);
  cache.apply = async (tenant: string, commits: readonly Commit[]) => {
    const first = (commits[0] as Commit).firstSeq;
    let gate = applyGates.get(first);
    if (!gate) applyGates.set(first, gate = new Gate());
    await gate.wait();
    applied.push(commits.map((c) => c.firstSeq));
    return apply(tenant, commits);
  };
  const pushed: number[][] = [];
  const service = new ArtifactService({
    rollout,
    cache,
    limits: { maxPayloadBytes: 65536, maxArtifactsPerThread: 1000 },
    backoff: async () => {},
    // No compaction in the way: the tail is short.
    compaction: { everyPatches: 1000 },
    writeMode: {
      kind: "resident",
      onDurable: (_tenant, commit) => pushed.push(commit.patches.map((p) => p.seq)),
    },
  });
  services.push(service);
  const gateOf = (seq: number) => {
    let gate = applyGates.get(seq);
    if (!gate) applyGates.set(seq, gate = new Gate());
    return gate;
  };
  return { store, rollout, cache, service, applied, pushed, applyGate: gateOf };
}

const create = (n: number, idempotency?: IdempotencyMark) => ({
  kind: "create" as const,
  artifactType: "note",
  identityKey: null,
  payload: { n },
  ...(idempotency ? { idempotency } : {}),
});

/** A write's promise, and whether it has settled. */
function track(promise: Promise<WriteResult>) {
  const state = { settled: false, result: undefined as WriteResult | undefined };
  promise.then((result) => {
    state.settled = true;
    state.result = result;
  }, () => (state.settled = true));
  return state;
}

describe("the resident writer overlaps a group's answers with the next group's put", () => {
  it("the next group is put while the previous one still reads back a repeated key's answer; order holds everywhere", async () => {
    const { store, rollout, cache, service, applied, pushed, applyGate } = setup();
    const key: IdempotencyMark = { key: "k-1", fingerprint: "f-1" };
    // Commit 1, with a key, all the way through.
    store.gateOf(store.putGates, 1).open();
    applyGate(1).open();
    const first = await service.write("local", "t", create(0, key));
    expect(first.thread.rolloutSeq).toBe(1);

    // Commit 2 held in its put; what arrives meanwhile queues as the next group.
    const w1 = track(service.write("local", "t", create(1)));
    await waitFor("the put of commit 2", () => store.puts.includes(2));
    // The repeat's answer is read back from commit 1 (it is not among its group's own patches): held.
    store.gateOf(store.getGates, 1);
    const repeat = track(service.write("local", "t", create(0, key)));
    const w2 = track(service.write("local", "t", create(2)));
    expect(w1.settled).toBe(false);

    // Commit 2 durable: its writer is answered; the group [repeat, w2] is decided and put at 3.
    store.gateOf(store.putGates, 2).open();
    await waitFor("w1 answered", () => w1.settled);
    expect(w1.result?.thread.rolloutSeq).toBe(2);
    await waitFor("the put of commit 3", () => store.puts.includes(3));
    const w3 = track(service.write("local", "t", create(3)));
    // Commit 3 durable: w2 is answered at once; the repeat waits on its read-back, and
    // meanwhile the next group (w3) is already put at 4.
    store.gateOf(store.putGates, 3).open();
    await waitFor("w2 answered", () => w2.settled);
    expect(w2.result?.thread.rolloutSeq).toBe(3);
    await waitFor("the put of commit 4, while the repeat's answer is still being read", () => store.puts.includes(4));
    expect(repeat.settled).toBe(false);
    expect(w3.settled).toBe(false);

    // Commit 4 durable: w3 answered; only then the repeat's read-back comes in.
    store.gateOf(store.putGates, 4).open();
    await waitFor("w3 answered", () => w3.settled);
    expect(repeat.settled).toBe(false);
    store.gateOf(store.getGates, 1).open();
    await waitFor("the repeat answered", () => repeat.settled);
    expect(repeat.result?.thread.rolloutSeq).toBe(1);
    expect(repeat.result).toEqual(first);

    // Every put once, in seq order; every commit's events pushed once, in order, before its answer.
    expect(store.puts).toEqual([1, 2, 3, 4]);
    expect(pushed).toEqual([[1], [2], [3], [4]]);
    const commits = await rollout.listCommits("local", "t", 0);
    expect(commits.map((c) => [c.firstSeq, c.lastSeq])).toEqual([[1, 1], [2, 2], [3, 3], [4, 4]]);

    // The cache: nothing past commit 1 until commit 2's apply is let through, then in order.
    expect(applied).toEqual([[1]]);
    applyGate(3).open();
    applyGate(4).open();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(applied).toEqual([[1]]);
    expect(await cache.seq("local", "t")).toBe(1);
    applyGate(2).open();
    await service.idle();
    await waitFor("the cache at 4", async () => (await cache.seq("local", "t")) === 4);
    expect(applied).toEqual([[1], [2], [3], [4]]);
  });

  it("compaction takes its tail from the writer's own commits: no listing, no commit read back, the same delta", async () => {
    const inner = new MemoryBlobStore();
    const reads: string[] = [];
    const counted: BlobStore = {
      localReads: false,
      get: (key) => (reads.push(`get ${key}`), inner.get(key)),
      list: (prefix, options) => (reads.push(`list ${prefix}`), inner.list(prefix, options)),
      exists: (key) => (reads.push(`exists ${key}`), inner.exists(key)),
      putIfAbsent: (key, body) => inner.putIfAbsent(key, body),
      put: (key, body) => inner.put(key, body),
      delete: (key) => inner.delete(key),
    };
    const rollout = new Rollout(counted);
    const cache = new LibsqlCache({ connect: () => createClient({ url: ":memory:" }), local: true });
    caches.push(cache);
    const service = new ArtifactService({
      rollout,
      cache,
      limits: { maxPayloadBytes: 65536, maxArtifactsPerThread: 1000 },
      backoff: async () => {},
      compaction: { everyPatches: 4 },
      writeMode: { kind: "resident", onDurable: () => {} },
    });
    services.push(service);
    for (let n = 0; n < 3; n++) await service.write("local", "c", create(n));
    await service.idle();
    reads.length = 0;
    // Seq 4 crosses the cadence: a delta of 1..4, read from nothing but the pointer and the life marker.
    await service.write("local", "c", create(3));
    await service.idle();
    expect(reads.filter((r) => r.startsWith("list") || r.includes("/commits/"))).toEqual([]);
    const pointer = await rollout.compaction.readPointer("local", "c");
    expect(pointer).toMatchObject({ seq: 4, deltas: [{ firstSeq: 1, lastSeq: 4 }] });
    // The delta is what the rollout's own commits make.
    const replayed = await rollout.load("local", "c");
    expect(replayed?.seq).toBe(4);
    expect(replayed).toEqual(await cache.readThread("local", "c"));
  });

  it("a store failure of group N's put fails N's writes; the next group starts only then, on the thread read again", async () => {
    const { store, service, pushed, applyGate } = setup();
    for (let seq = 1; seq <= 4; seq++) applyGate(seq).open();
    store.gateOf(store.putGates, 1).open();
    await service.write("local", "f", create(0));
    // Commit 2's put fails: its outcome unknown, its writes get the error, nothing is pushed for it.
    const failing = store.putIfAbsent.bind(store);
    let failed = false;
    store.putIfAbsent = async (key, body) => {
      if (!failed && firstSeqOfCommitKey(key) === 2) {
        failed = true;
        store.puts.push(2);
        throw new Error("injected put failure");
      }
      return failing(key, body);
    };
    store.gateOf(store.putGates, 2).open();
    store.gateOf(store.putGates, 3).open();
    const results = await Promise.allSettled([
      service.write("local", "f", create(1)),
      service.write("local", "f", create(2)),
    ]);
    expect(results[0]?.status).toBe("rejected");
    // The next group goes on at 2 (the failed put never landed): decided on the thread
    // loaded again, not on a state that counted the failed group.
    expect(results[1]).toMatchObject({ status: "fulfilled", value: { thread: { rolloutSeq: 2 } } });
    expect(store.puts).toEqual([1, 2, 2]);
    expect(pushed).toEqual([[1], [2]]);
  });
});
