/**
 * The behaviour every LibsqlCache backend must show (a `file:` URL through the native
 * client, `http://` through the web client and a Hrana server). Expected states come from
 * `materialize`, the model's own replay, so the cache is checked against the rollout's
 * meaning rather than against itself.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { LibsqlCache } from "../../src/cache/libsql.ts";
import { CacheUnavailableError } from "../../src/cache/port.ts";
import type { Artifact, ThreadState } from "../../src/model/artifact.ts";
import type { TargetLookup } from "../../src/model/decide.ts";
import type { JsonValue } from "../../src/model/json.ts";
import { materialize } from "../../src/model/materialize.ts";
import { type ArtifactPatch, type Commit, commitOf, type Patch, type PatchOp, toEvent } from "../../src/model/patch.ts";
import { waitFor } from "../support/wait.ts";

export interface CacheUnderTest {
  cache: LibsqlCache;
  /** How many times the cache has asked for a libSQL client (connect()). */
  readonly connects: number;
  /** Makes libSQL unreachable for the cache. */
  outage(): Promise<void>;
  /** Makes it reachable again, with the data it had. */
  restore(): Promise<void>;
  /** Runs SQL on the cache's database behind the cache's back. */
  exec(sql: string): void;
  dispose(): Promise<void>;
}

export type MakeCache = (options: { retryAfterMs: number }) => Promise<CacheUnderTest>;

/** A thread's rollout, built patch by patch with the artifacts the service would write. */
export class History {
  readonly patches: Patch[] = [];
  #state: ThreadState | null = null;
  #ids = 0;

  constructor(
    readonly threadId: string,
    /** Patch n is at startMs + n seconds. */
    readonly startMs = Date.UTC(2024, 0, 1),
  ) {}

  get state(): ThreadState {
    if (!this.#state) throw new Error("no patches yet");
    return this.#state;
  }

  /** The thread as of `seq` (a snapshot's content). */
  stateAt(seq: number): ThreadState {
    return materialize(null, this.patches.slice(0, seq)) as ThreadState;
  }

  patch(seq: number): ArtifactPatch {
    return this.patches[seq - 1] as ArtifactPatch;
  }

  /** Patches from..to inclusive. */
  range(from: number, to: number): Patch[] {
    return this.patches.slice(from - 1, to);
  }

  add(artifactType: string, identityKey: string | null, payload: JsonValue): Artifact {
    const seq = this.patches.length + 1;
    const at = this.#at(seq);
    // Ids that sort against creation order, so order cannot come from the key.
    const id = `${this.threadId}~${String.fromCharCode(0x7a - (this.#ids++ % 26))}${this.#ids}`;
    return this.#push("add", {
      id,
      threadId: this.threadId,
      artifactType,
      identityKey,
      payload,
      version: 1,
      createdAt: at,
      updatedAt: at,
      seq,
    });
  }

  update(artifact: Artifact, payload: JsonValue): Artifact {
    const seq = this.patches.length + 1;
    const current = this.#current(artifact.id);
    return this.#push("update", { ...current, payload, version: current.version + 1, updatedAt: this.#at(seq), seq });
  }

  remove(artifact: Artifact): Artifact {
    return this.#push("remove", this.#current(artifact.id));
  }

  #current(id: string): Artifact {
    const found = this.#state?.artifacts.find((a) => a.id === id);
    if (!found) throw new Error(`no live artifact ${id}`);
    return found;
  }

  #at(seq: number): string {
    return new Date(this.startMs + seq * 1000).toISOString();
  }

  #push(op: PatchOp, artifact: Artifact): Artifact {
    const seq = this.patches.length + 1;
    const patch: Patch = { seq, threadId: this.threadId, at: this.#at(seq), op, artifact };
    this.patches.push(patch);
    this.#state = materialize(this.#state, [patch]);
    return artifact;
  }
}

/** Each patch its own commit (how a cache sees writes made one at a time). */
export function asCommits(patches: readonly Patch[]): Commit[] {
  return patches.map((patch) => commitOf([patch]));
}

const T = "tenant-a";
const OTHER = "tenant-b";

/** add, add, update, add, remove, add: a bit of everything. */
function mixed(threadId: string, startMs?: number): History {
  const h = new History(threadId, startMs);
  const plan = h.add("plan", "main", { steps: ["a", "b"] });
  const note = h.add("note", null, { text: "héllo ✓" });
  h.update(plan, { steps: ["a", "b", "c"], done: false });
  h.add("plan", "side", [1, 2.5, null, true]);
  h.remove(note);
  h.add("note", null, { text: "again" });
  return h;
}

export function describeCacheContract(name: string, makeCache: MakeCache): void {
  describe(`LibsqlCache contract: ${name}`, () => {
    let h: CacheUnderTest;
    let cache: LibsqlCache;
    const extra: CacheUnderTest[] = [];

    beforeEach(async () => {
      h = await makeCache({ retryAfterMs: 20 });
      cache = h.cache;
    });

    afterEach(async () => {
      await h.dispose();
      for (const e of extra.splice(0)) await e.dispose();
    });

    it("opens libSQL only when first used", async () => {
      expect(h.connects).toBe(0);
      expect(await cache.seq(T, "nothing")).toBe(0);
      expect(h.connects).toBe(1);
      await cache.readThread(T, "nothing");
      expect(h.connects).toBe(1);
    });

    it("applies contiguous patches and returns the new seq", async () => {
      const t = mixed("thread-1");
      expect(await cache.seq(T, t.threadId)).toBe(0);
      expect(await cache.readThread(T, t.threadId)).toBeNull();

      expect(await cache.apply(T, asCommits(t.range(1, 2)))).toBe(2);
      expect(await cache.readThread(T, t.threadId)).toEqual(t.stateAt(2));
      expect(await cache.apply(T, asCommits(t.range(3, 6)))).toBe(6);
      expect(await cache.seq(T, t.threadId)).toBe(6);
      expect(await cache.readThread(T, t.threadId)).toEqual(t.state);
    });

    it("applies a commit whole: a commit of many patches lands at once, one that does not continue the seq not at all", async () => {
      const t = new History("thread-commits");
      const first = t.add("plan", "main", { n: 0 });
      for (let i = 1; i < 250; i++) t.update(first, { n: i });
      // One commit of 250 patches: more than a batch chunk (200) holds, still one batch.
      expect(await cache.apply(T, [commitOf(t.range(1, 250))])).toBe(250);
      expect((await cache.events(T, t.threadId, 0, 1000)).events.map((e) => e.seq)).toEqual(
        t.patches.map((p) => p.seq),
      );
      for (let i = 0; i < 10; i++) t.update(first, { more: i });
      // Seqs 252-260 do not continue 250: nothing of that commit lands, not even a prefix.
      expect(await cache.apply(T, [commitOf(t.range(252, 260))])).toBe(250);
      expect(await cache.readThread(T, t.threadId)).toEqual(t.stateAt(250));
      // Whole commits in order after a prefix of them: the cache stops at a commit boundary.
      expect(await cache.apply(T, [commitOf(t.range(251, 253)), commitOf(t.range(255, 260))])).toBe(253);
      expect(await cache.readThread(T, t.threadId)).toEqual(t.stateAt(253));
    });

    it("applies nothing across a gap and returns the old seq", async () => {
      const t = mixed("thread-gap");
      // No row yet: a thread cannot start anywhere but at 1.
      expect(await cache.apply(T, asCommits(t.range(2, 3)))).toBe(0);
      expect(await cache.readThread(T, t.threadId)).toBeNull();

      expect(await cache.apply(T, asCommits(t.range(1, 2)))).toBe(2);
      expect(await cache.apply(T, asCommits(t.range(4, 6)))).toBe(2);
      expect(await cache.readThread(T, t.threadId)).toEqual(t.stateAt(2));
      expect((await cache.events(T, t.threadId, 0, 100)).events.map((e) => e.seq)).toEqual([1, 2]);
      const addedAt4 = t.patch(4).artifact;
      expect(await cache.getArtifact(T, t.threadId, addedAt4.id)).toEqual({ seq: 2, artifact: null });

      // A hole inside one call: everything before it lands, nothing after it.
      expect(await cache.apply(T, asCommits([t.patch(3), t.patch(5), t.patch(6)]))).toBe(3);
      expect(await cache.readThread(T, t.threadId)).toEqual(t.stateAt(3));
      expect(await cache.apply(T, asCommits(t.range(4, 6)))).toBe(6);
      expect(await cache.readThread(T, t.threadId)).toEqual(t.state);
    });

    it("treats re-applying the head patch, or any applied patch, as a no-op", async () => {
      const t = new History("thread-again");
      const a = t.add("plan", "a", { n: 1 });
      const b = t.add("plan", "b", { n: 2 });
      t.update(a, { n: 3 });
      t.remove(b); // the head is a removal
      expect(await cache.apply(T, asCommits(t.patches))).toBe(4);
      const before = await cache.readThread(T, t.threadId);
      const eventsBefore = await cache.events(T, t.threadId, 0, 100);

      expect(await cache.apply(T, asCommits([t.patch(4)]))).toBe(4);
      expect(await cache.apply(T, asCommits([t.patch(1)]))).toBe(4);
      expect(await cache.apply(T, asCommits(t.patches))).toBe(4);
      expect(await cache.readThread(T, t.threadId)).toEqual(before);
      expect(before).toEqual(t.state);
      expect(await cache.events(T, t.threadId, 0, 100)).toEqual(eventsBefore);
      expect(eventsBefore.events).toHaveLength(4);
    });

    it("installs a snapshot into an empty thread, then applies the tail", async () => {
      const t = mixed("thread-installed");
      const base = t.stateAt(4);
      expect(await cache.install(T, base)).toBe(4);
      expect(await cache.readThread(T, t.threadId)).toEqual(base);
      // Patches the snapshot already holds change nothing.
      expect(await cache.apply(T, asCommits(t.range(1, 4)))).toBe(4);
      expect(await cache.readThread(T, t.threadId)).toEqual(base);

      expect(await cache.apply(T, asCommits(t.range(5, 6)))).toBe(6);
      expect(await cache.readThread(T, t.threadId)).toEqual(t.state);

      // Install only fills a thread the cache does not have.
      expect(await cache.install(T, t.stateAt(5))).toBe(6);
      expect(await cache.install(T, { ...t.stateAt(3), artifacts: [] })).toBe(6);
      expect(await cache.readThread(T, t.threadId)).toEqual(t.state);
    });

    it("keeps a fork's origin through apply, install and the thread list", async () => {
      const t = mixed("thread-forked");
      const fork = { threadId: "the-source", seq: 17 };
      const patches = t.range(1, 6).map((p, i) => (i === 0 ? { ...p, fork } : p));
      const expected = materialize(null, patches) as ThreadState;
      expect(expected.forkedFrom).toEqual(fork);
      expect(await cache.apply(T, asCommits(patches))).toBe(6);
      expect(await cache.readThread(T, t.threadId)).toEqual(expected);
      expect((await cache.listThreads(T, { after: null, limit: 10 })).find((x) => x.threadId === t.threadId))
        .toEqual(expected);
      // A snapshot of a fork installs with its origin.
      const other = mixed("thread-forked-installed");
      const installed = { ...other.stateAt(3), forkedFrom: fork };
      expect(await cache.install(T, installed)).toBe(3);
      expect(await cache.readThread(T, other.threadId)).toEqual(installed);
      // Not a fork: no forkedFrom key at all.
      expect(await cache.apply(T, asCommits(mixed("thread-plain").range(1, 2)))).toBe(2);
      expect(await cache.readThread(T, "thread-plain")).not.toHaveProperty("forkedFrom");
    });

    it("reads a thread with its artifacts in creation order; updates keep their place", async () => {
      const t = new History("thread-order");
      const x = t.add("plan", "x", { v: "x" });
      const y = t.add("plan", "y", { v: "y" });
      t.add("plan", "z", { v: "z" });
      t.update(x, { v: "x2" });
      t.remove(y);
      t.add("note", null, { v: "w" });
      t.update(x, { v: "x3", nested: { deep: [1, { k: null }] } });
      await cache.apply(T, asCommits(t.patches));
      const read = await cache.readThread(T, t.threadId);
      expect(read).toEqual(t.state);
      expect(read?.artifacts.map((a) => a.payload)).toEqual([{ v: "x3", nested: { deep: [1, { k: null }] } }, {
        v: "z",
      }, { v: "w" }]);
      expect(read?.artifacts[0]?.version).toBe(3);
      expect(read).toMatchObject({ createdAt: t.patch(1).at, updatedAt: t.patch(7).at, seq: 7 });
      expect(await cache.readThread(OTHER, t.threadId)).toBeNull();

      // Stored in reverse (rowids against creation order): the order still comes from position.
      h.exec(
        `CREATE TEMP TABLE reversed AS SELECT * FROM artifacts WHERE thread_id = 'thread-order' ORDER BY position DESC;
        DELETE FROM artifacts WHERE thread_id = 'thread-order';
        INSERT INTO artifacts SELECT * FROM reversed;`,
      );
      expect(await cache.readThread(T, t.threadId)).toEqual(t.state);
      expect(JSON.parse((await cache.readThreadJson(T, t.threadId))?.artifactsJson ?? "null")).toEqual(
        t.state.artifacts,
      );
    });

    it("keeps tenants apart", async () => {
      const mine = mixed("shared-id");
      const theirs = new History("shared-id", Date.UTC(2030, 0, 1));
      theirs.add("other", "k", { theirs: true });
      await cache.apply(T, asCommits(mine.patches));
      expect(await cache.apply(OTHER, asCommits(theirs.patches))).toBe(1);
      expect(await cache.readThread(T, "shared-id")).toEqual(mine.state);
      expect(await cache.readThread(OTHER, "shared-id")).toEqual(theirs.state);
      expect(await cache.listThreads(OTHER, { after: null, limit: 10 })).toEqual([theirs.state]);
    });

    it("gives a write its context: target by identity or by id, and the artifact count", async () => {
      const t = new History("thread-ctx");
      const a = t.add("plan", "k1", { a: 1 });
      const b = t.add("plan", null, { b: 1 });
      const c = t.add("note", "k1", { c: 1 });
      t.add("plan", null, { d: 1 });
      await cache.apply(T, asCommits(t.patches));

      const one = async (lookup: TargetLookup) => {
        const { targets, updatedAt, ...rest } = await cache.writeContext(T, t.threadId, [lookup]);
        expect(targets).toHaveLength(1);
        // How old the context may be: the cached head's last patch.
        expect(updatedAt).toBe(t.patches[t.patches.length - 1]?.at);
        return { ...rest, target: targets[0] };
      };
      const identity = (artifactType: string, identityKey: string | null) =>
        one({ by: "identity", artifactType, identityKey });
      const byId = (artifactId: string) => one({ by: "id", artifactId });
      expect(await identity("plan", "k1")).toEqual({ seq: 4, artifactCount: 4, target: a });
      expect((await identity("note", "k1")).target).toEqual(c);
      expect((await identity("plan", "k2")).target).toBeNull();
      // Without an identityKey a create never matches, even with keyless artifacts of that type.
      expect(await identity("plan", null)).toEqual({ seq: 4, artifactCount: 4, target: null });
      expect(await byId(b.id)).toEqual({ seq: 4, artifactCount: 4, target: b });
      expect((await byId("no-such-id")).target).toBeNull();

      const a2 = t.update(a, { a: 2 });
      t.remove(c);
      expect(await cache.apply(T, asCommits(t.range(5, 6)))).toBe(6);
      expect(await identity("plan", "k1")).toEqual({ seq: 6, artifactCount: 3, target: a2 });
      expect((await identity("note", "k1")).target).toBeNull();
      expect(await byId(c.id)).toEqual({ seq: 6, artifactCount: 3, target: null });

      expect(await cache.writeContext(T, "unknown", [{ by: "id", artifactId: a.id }])).toEqual({
        seq: 0,
        artifactCount: 0,
        targets: [null],
        updatedAt: null,
      });
      expect(await cache.writeContext(OTHER, t.threadId, [{ by: "identity", artifactType: "plan", identityKey: "k1" }]))
        .toEqual({ seq: 0, artifactCount: 0, targets: [null], updatedAt: null });
    });

    it("gives a group of writes one context: every lookup's target in order, repeats included", async () => {
      const t = new History("thread-group-ctx");
      const a = t.add("plan", "k1", { a: 1 });
      const b = t.add("note", null, { b: 1 });
      await cache.apply(T, asCommits(t.patches));
      const lookups: TargetLookup[] = [
        { by: "id", artifactId: b.id },
        { by: "identity", artifactType: "plan", identityKey: "k1" },
        { by: "identity", artifactType: "note", identityKey: null },
        { by: "id", artifactId: "no-such-id" },
        { by: "id", artifactId: b.id },
        { by: "identity", artifactType: "plan", identityKey: "k1" },
      ];
      const updatedAt = t.patches[1]?.at;
      expect(await cache.writeContext(T, t.threadId, lookups)).toEqual({
        seq: 2,
        artifactCount: 2,
        targets: [b, a, null, null, b, a],
        updatedAt,
      });
      expect(await cache.writeContext(T, t.threadId, [])).toEqual({ seq: 2, artifactCount: 2, targets: [], updatedAt });
    });

    it("gets one artifact with the thread's seq", async () => {
      const t = mixed("thread-get");
      await cache.apply(T, asCommits(t.patches));
      const plan = t.patch(3).artifact; // the updated plan
      const removed = t.patch(5).artifact;
      expect(await cache.getArtifact(T, t.threadId, plan.id)).toEqual({ seq: 6, artifact: plan });
      expect(await cache.getArtifact(T, t.threadId, removed.id)).toEqual({ seq: 6, artifact: null });
      expect(await cache.getArtifact(T, t.threadId, "missing")).toEqual({ seq: 6, artifact: null });
      expect(await cache.getArtifact(T, "unknown", plan.id)).toEqual({ seq: 0, artifact: null });
    });

    it("lists threads by updatedAt desc, then threadId desc, page by page", async () => {
      const s = Date.UTC(2024, 5, 1);
      const a = new History("t-a", s);
      a.add("plan", null, { a: 1 });
      a.add("plan", null, { a: 2 });
      a.add("plan", null, { a: 3 }); // updated at s+3s
      const b = new History("t-b", s + 1000);
      b.add("note", null, { b: 1 });
      b.add("note", null, { b: 2 }); // s+3s too: the tie goes to the larger threadId
      const c = new History("t-c", s + 5000);
      c.add("plan", "k", { c: 1 }); // s+6s
      const d = new History("t-d", s);
      d.add("plan", null, { d: 1 }); // s+1s
      const elsewhere = new History("t-z", s + 60_000);
      elsewhere.add("plan", null, {});
      for (const t of [a, b, c, d]) await cache.apply(T, asCommits(t.patches));
      await cache.apply(OTHER, asCommits(elsewhere.patches));

      const expected = [c.state, b.state, a.state, d.state];
      expect(await cache.listThreads(T, { after: null, limit: 10 })).toEqual(expected);
      const page1 = await cache.listThreads(T, { after: null, limit: 2 });
      expect(page1).toEqual([c.state, b.state]);
      const cursor = (state: ThreadState) => ({ updatedAt: state.updatedAt, threadId: state.threadId });
      const page2 = await cache.listThreads(T, { after: cursor(page1[1] as ThreadState), limit: 2 });
      expect(page2).toEqual([a.state, d.state]);
      expect(await cache.listThreads(T, { after: cursor(d.state), limit: 2 })).toEqual([]);
      expect(await cache.listThreads(T, { after: cursor(c.state), limit: 1 })).toEqual([b.state]);

      // A newer patch moves a thread to the front.
      d.add("plan", null, { d: 2 }); // s+2s: still the oldest
      a.add("plan", null, { a: 4 }); // s+4s: behind c only
      await cache.apply(T, asCommits(d.range(2, 2)));
      await cache.apply(T, asCommits(a.range(4, 4)));
      const order = (await cache.listThreads(T, { after: null, limit: 10 })).map((t) => t.threadId);
      expect(order).toEqual(["t-c", "t-a", "t-b", "t-d"]);
    });

    it("lists changed threads since a time (heads only, newest first, deleted ones too), page by page", async () => {
      const s = Date.UTC(2024, 6, 1);
      const a = new History("c-a", s);
      a.add("plan", null, { a: 1 }); // s+1s
      const b = new History("c-b", s + 2000);
      b.add("note", null, { b: 1 }); // s+3s
      b.add("note", null, { b: 2 }); // s+4s
      const c = new History("c-c", s + 4000);
      c.add("plan", null, { c: 1 }); // s+5s
      const elsewhere = new History("c-z", s + 9000);
      elsewhere.add("plan", null, {});
      for (const t of [a, b, c]) await cache.apply(T, asCommits(t.patches));
      await cache.apply(OTHER, asCommits(elsewhere.patches));
      // c's delete (its tombstone at s+6s) is listed: a webhook must see thread-deleted.
      const tombstone = { seq: 2, threadId: "c-c", at: new Date(s + 6000).toISOString(), op: "delete" as const };
      await cache.apply(T, [{ threadId: "c-c", firstSeq: 2, lastSeq: 2, at: tombstone.at, patches: [tombstone] }]);

      const since = (ms: number) => new Date(s + ms).toISOString();
      const all = await cache.changedThreads(T, { since: since(0), after: null, limit: 10 });
      expect(all).toEqual([
        { threadId: "c-c", seq: 2, updatedAt: since(6000) },
        { threadId: "c-b", seq: 2, updatedAt: since(4000) },
        { threadId: "c-a", seq: 1, updatedAt: since(1000) },
      ]);
      // At the edge: a thread updated exactly at `since` is in, 1 ms later it is not.
      expect((await cache.changedThreads(T, { since: since(4000), after: null, limit: 10 })).map((t) => t.threadId))
        .toEqual(["c-c", "c-b"]);
      expect((await cache.changedThreads(T, { since: since(4001), after: null, limit: 10 })).map((t) => t.threadId))
        .toEqual(["c-c"]);
      const first = await cache.changedThreads(T, { since: since(0), after: null, limit: 2 });
      expect(first).toEqual(all.slice(0, 2));
      const last = first[1] as (typeof all)[number];
      expect(
        await cache.changedThreads(T, {
          since: since(0),
          after: { updatedAt: last.updatedAt, threadId: last.threadId },
          limit: 2,
        }),
      ).toEqual(all.slice(2));
      expect(await cache.changedThreads(OTHER, { since: since(0), after: null, limit: 10 })).toEqual([
        { threadId: "c-z", seq: 1, updatedAt: since(10_000) },
      ]);
    });

    it("serves the event log after applies, and a floor after an install", async () => {
      const t = mixed("thread-events");
      await cache.apply(T, asCommits(t.range(1, 3)));
      const page = await cache.events(T, t.threadId, 0, 10);
      expect(page.seq).toBe(3);
      expect(page.floor).toBe(0);
      expect(page.events.map((e) => e.seq)).toEqual([1, 2, 3]);
      page.events.forEach((e, i) => {
        expect(JSON.parse(e.data)).toEqual(toEvent(t.patch(i + 1)));
        expect(e.data).not.toContain("\n");
      });
      expect((await cache.events(T, t.threadId, 1, 1)).events.map((e) => e.seq)).toEqual([2]);
      expect((await cache.events(T, t.threadId, 3, 10)).events).toEqual([]);
      expect(await cache.events(T, "unknown", 0, 10)).toEqual({ seq: 0, floor: 0, lifeStart: 0, events: [] });

      const installed = mixed("thread-installed-events");
      await cache.install(T, installed.stateAt(4));
      expect(await cache.events(T, installed.threadId, 0, 10)).toEqual({ seq: 4, floor: 4, lifeStart: 0, events: [] });
      await cache.apply(T, asCommits(installed.range(5, 6)));
      const after = await cache.events(T, installed.threadId, 0, 10);
      expect(after.floor).toBe(4);
      expect(after.seq).toBe(6);
      expect(after.events.map((e) => JSON.parse(e.data))).toEqual([
        toEvent(installed.patch(5)),
        toEvent(installed.patch(6)),
      ]);
    });

    it("reads the event logs of many threads in one call, each page as `events` gives it", async () => {
      const a = mixed("many-a");
      const b = mixed("many-b");
      await cache.apply(T, asCommits(a.range(1, 5)));
      await cache.apply(T, asCommits(b.range(1, 3)));
      const installed = mixed("many-installed");
      await cache.install(T, installed.stateAt(4));
      await cache.apply(T, asCommits(installed.range(5, 6)));
      const reads = [
        { threadId: a.threadId, afterSeq: 1 },
        { threadId: b.threadId, afterSeq: 0 },
        { threadId: "many-unknown", afterSeq: 0 },
        { threadId: installed.threadId, afterSeq: 0 },
        // The same thread from another point: its own page.
        { threadId: a.threadId, afterSeq: 3 },
        { threadId: b.threadId, afterSeq: 3 },
      ];
      const pages = await cache.eventsMany(T, reads, 2);
      const one = await Promise.all(reads.map((r) => cache.events(T, r.threadId, r.afterSeq, 2)));
      expect(pages).toEqual(one);
      expect(pages.map((page) => page.events.map((e) => e.seq))).toEqual([[2, 3], [1, 2], [], [5, 6], [4, 5], []]);
      // Tenants stay apart; nothing to read is no query.
      expect((await cache.eventsMany(OTHER, reads.slice(0, 1), 10))[0]).toEqual({
        seq: 0,
        floor: 0,
        lifeStart: 0,
        events: [],
      });
      expect(await cache.eventsMany(T, [], 10)).toEqual([]);
    });

    it("applies more patches than one batch holds, stopping at a gap in a later batch", async () => {
      const long = new History("thread-long");
      const artifacts = [long.add("plan", "a", 0), long.add("plan", "b", 0), long.add("note", null, 0)];
      while (long.patches.length < 450) {
        const i = long.patches.length % 3;
        artifacts[i] = long.update(artifacts[i] as Artifact, long.patches.length);
      }
      expect(await cache.apply(T, asCommits(long.patches))).toBe(450);
      expect(await cache.readThread(T, long.threadId)).toEqual(long.state);
      expect((await cache.events(T, long.threadId, 440, 100)).events.map((e) => e.seq)).toEqual([
        441,
        442,
        443,
        444,
        445,
        446,
        447,
        448,
        449,
        450,
      ]);

      const holed = new History("thread-holed");
      let doc = holed.add("plan", null, 0);
      while (holed.patches.length < 400) doc = holed.update(doc, holed.patches.length);
      const withoutSeq251 = holed.patches.filter((p) => p.seq !== 251);
      expect(await cache.apply(T, asCommits(withoutSeq251))).toBe(250);
      expect(await cache.readThread(T, holed.threadId)).toEqual(holed.stateAt(250));
    });

    it("rejects with CacheUnavailableError while libSQL is down, and recovers", async () => {
      const t = mixed("thread-outage");
      expect(await cache.apply(T, asCommits(t.range(1, 2)))).toBe(2);

      await h.outage();
      await expect(cache.seq(T, t.threadId)).rejects.toBeInstanceOf(CacheUnavailableError);
      await expect(cache.apply(T, asCommits([t.patch(3)]))).rejects.toBeInstanceOf(CacheUnavailableError);
      await expect(cache.readThread(T, t.threadId)).rejects.toBeInstanceOf(CacheUnavailableError);
      await expect(cache.ping()).rejects.toBeDefined();

      await h.restore();
      // The breaker lets calls through again after retryAfterMs.
      await waitFor("the cache to answer again", async () => {
        expect(await cache.seq(T, t.threadId)).toBe(2);
        return true;
      }, { timeoutMs: 15_000, intervalMs: 10 });
      // Nothing from the outage landed; what was there before still is.
      expect(await cache.readThread(T, t.threadId)).toEqual(t.stateAt(2));
      expect(await cache.apply(T, asCommits(t.range(3, 6)))).toBe(6);
      expect(await cache.readThread(T, t.threadId)).toEqual(t.state);
      await cache.ping();
    });

    it("surfaces a SQL error as itself, not as libSQL being down", async () => {
      const strict = await makeCache({ retryAfterMs: 3_600_000 });
      extra.push(strict);
      const t = mixed("thread-sql-error");
      expect(await strict.cache.apply(T, asCommits(t.patches))).toBe(6);
      strict.exec("DROP TABLE events");
      const error = await strict.cache.events(T, t.threadId, 0, 10).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(Error);
      expect(error).not.toBeInstanceOf(CacheUnavailableError);
      expect((error as Error).message).toContain("no such table: events");
      // The breaker stayed closed: the next call reaches libSQL.
      expect(await strict.cache.seq(T, t.threadId)).toBe(6);
    });

    it("fails fast while the breaker is open, without touching libSQL", async () => {
      const slow = await makeCache({ retryAfterMs: 3_600_000 });
      extra.push(slow);
      const t = mixed("thread-breaker");
      expect(await slow.cache.apply(T, asCommits(t.range(1, 1)))).toBe(1);
      await slow.outage();
      await expect(slow.cache.seq(T, t.threadId)).rejects.toBeInstanceOf(CacheUnavailableError);
      await slow.restore();

      const connects = slow.connects;
      await expect(slow.cache.seq(T, t.threadId)).rejects.toBeInstanceOf(CacheUnavailableError);
      await expect(slow.cache.apply(T, asCommits(t.range(2, 2)))).rejects.toBeInstanceOf(CacheUnavailableError);
      await expect(slow.cache.listThreads(T, { after: null, limit: 5 })).rejects.toBeInstanceOf(CacheUnavailableError);
      expect(slow.connects).toBe(connects);
      // ping goes around the breaker: it really asks libSQL.
      await slow.cache.ping();
      expect(slow.connects).toBe(connects + 1);
    });
  });
}
