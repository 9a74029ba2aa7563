/**
 * The rollout store misbehaving, in process (the app wired as the Node runtime wires
 * it, with a real libSQL file), through a fault-injecting BlobStore over a real
 * FsBlobStore: failures before the call, lost responses after it (the write landed,
 * the caller cannot know) and latency spikes, from a seeded generator.
 * - Never a 2xx without the durable patch: every acknowledged write is in the store
 *   underneath, at its seq, with the artifact the response named.
 * - Every other answer is a legitimate 4xx or a problem+json 503 `unavailable` with
 *   Retry-After; nothing else, no 500.
 * - Once the store behaves, the rollout is contiguous and the cache heals to a replay.
 * - The store fully down: writes and strong reads are 503 + Retry-After, /healthz is 503.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FsBlobStore } from "../../src/blob/fs.ts";
import type { Artifact } from "../../src/model/artifact.ts";
import { materialize } from "../../src/model/materialize.ts";
import { type ArtifactPatch, patchesOf } from "../../src/model/patch.ts";
import { commitsPrefix, firstSeqOfCommitKey } from "../../src/rollout/keys.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { range, threadView } from "../support/cluster.ts";
import { type FaultSettings, FaultyBlobStore } from "../support/faulty-blob-store.ts";
import { createTestApp } from "../support/in-process.ts";
import { type CapturedLogs, captureLogs } from "../support/logs.ts";

type App = ReturnType<typeof createTestApp>;
type Result = Awaited<ReturnType<App["request"]>>;

const cleanups: (() => void | Promise<void>)[] = [];
/** What the app and the service logged at warn and above: each 503 must come from an injected fault, never from a bug. */
let logs: CapturedLogs;
beforeEach(() => {
  logs = captureLogs("warn");
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

function expectOnlyInjectedFaultsLogged() {
  const logged = logs.lines;
  // (The store logs its faults, once per burst; whoever meets one again up the stack, a
  // cache repair or the request answering 503, logs it at debug only.)
  const other = logged.filter((line) => !/InjectedFault: injected (failure|lost response)/.test(line));
  expect(other).toEqual([]);
  expect(logged.length).toBeGreaterThan(0);
}

function faultyApp(seed: number) {
  const dir = mkdtempSync(join(tmpdir(), "artifacts-faulty-"));
  const inner = new FsBlobStore(join(dir, "rollouts"));
  const store = new FaultyBlobStore(inner, seed);
  // COMPACT_EVERY small: compaction writes (and their failures) happen during the load too.
  const app = createTestApp({ blobStore: store, env: { COMPACT_EVERY: "5" } });
  cleanups.push(async () => {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { app, store, inner, truth: new Rollout(inner) };
}

const THREADS = ["alpha", "beta", "gamma"];
const path = (threadId: string, rest = "") => `/v1/threads/${threadId}${rest}`;

type Kind = "create" | "identity" | "update" | "update-if-match" | "remove" | "read";
interface Job {
  kind: Kind;
  threadId: string;
  run: () => Promise<Result>;
}

/** What each kind of request may legitimately answer besides a 503. */
const ALLOWED: Record<Kind, { status: number; code?: string }[]> = {
  create: [{ status: 201 }],
  identity: [{ status: 201 }, { status: 200 }, { status: 409, code: "identity_conflict" }],
  update: [{ status: 200 }],
  "update-if-match": [{ status: 200 }, { status: 412, code: "version_conflict" }],
  remove: [{ status: 200 }, { status: 404, code: "artifact_not_found" }],
  read: [{ status: 200 }],
};

async function seedThreads(app: App): Promise<Map<string, Artifact[]>> {
  const seeded = new Map<string, Artifact[]>();
  for (const threadId of THREADS) {
    const docs: Artifact[] = [];
    for (const i of range(6)) {
      const r = await app.request("POST", path(threadId, "/artifacts"), { artifactType: "doc", payload: { seed: i } });
      expect(r.status, r.text).toBe(201);
      docs.push(r.json.artifact);
    }
    seeded.set(threadId, docs);
  }
  return seeded;
}

function mixedLoad(app: App, seeded: Map<string, Artifact[]>): Job[] {
  const jobs: Job[] = [];
  for (const threadId of THREADS) {
    const docs = seeded.get(threadId) as Artifact[];
    const add = (kind: Kind, run: () => Promise<Result>) => jobs.push({ kind, threadId, run });
    for (const n of range(14)) {
      add("create", () => app.request("POST", path(threadId, "/artifacts"), { artifactType: "note", payload: { n } }));
    }
    for (const n of range(8)) {
      // Three identities; one request per identity asks for a different payload (a 409 once another landed).
      const key = n % 3;
      const payload = n === 7 ? { key, odd: true } : { key };
      add(
        "identity",
        () =>
          app.request("POST", path(threadId, "/artifacts"), { artifactType: "cfg", identityKey: `k${key}`, payload }),
      );
    }
    for (const doc of docs.slice(0, 4)) {
      for (const u of range(2)) {
        add(
          "update",
          () => app.request("PATCH", path(threadId, `/artifacts/${doc.id}`), { payload: { doc: doc.id, u } }),
        );
      }
      add(
        "update-if-match",
        () =>
          app.request("PATCH", path(threadId, `/artifacts/${doc.id}`), { payload: { ifMatch: 1 } }, {
            "if-match": '"1"',
          }),
      );
    }
    for (const _ of range(2)) {
      add("remove", () => app.request("DELETE", path(threadId, `/artifacts/${(docs[5] as Artifact).id}`)));
    }
    for (const _ of range(5)) add("read", () => app.request("GET", path(threadId)));
  }
  // Interleave threads and kinds (7 is coprime with the job count).
  expect(jobs.length % 7).not.toBe(0);
  return jobs.map((_, i) => jobs[(i * 7) % jobs.length] as Job);
}

function expectProblem503(r: Result) {
  expect(r.status, r.text).toBe(503);
  expect(r.headers.get("content-type")).toContain("application/problem+json");
  expect(r.json).toMatchObject({ type: "about:blank", status: 503, code: "unavailable" });
  expect(r.headers.get("retry-after")).toMatch(/^\d+$/);
  // Nothing internal leaks: no injected-fault message, no path.
  expect(r.text).not.toMatch(/injected|rollouts|\.json/);
}

async function allPatches(store: FsBlobStore, threadId: string): Promise<ArtifactPatch[]> {
  const commits = await new Rollout(store).listCommits("local", threadId, 0);
  const patches = patchesOf(commits);
  // Contiguous: the folder holds exactly the commits that listCommits chained, nothing beside them.
  const keys = await store.list(commitsPrefix("local", threadId), { limit: 100_000 });
  expect(keys.map(firstSeqOfCommitKey)).toEqual(commits.map((c) => c.firstSeq));
  expect(patches.map((p) => p.seq)).toEqual(range(patches.length));
  return patches as ArtifactPatch[];
}

const FAULT_PROFILES: { name: string; seed: number; settings: Partial<FaultSettings> }[] = [
  {
    name: "errors, lost responses and delays on every operation",
    seed: 1,
    settings: { errorRate: 0.15, lostResponseRate: 0.08, delayRate: 0.3, maxDelayMs: 4 },
  },
  {
    name: "the same with another seed",
    seed: 20261125,
    settings: { errorRate: 0.15, lostResponseRate: 0.08, delayRate: 0.3, maxDelayMs: 4 },
  },
  {
    // A put whose response is lost is read back; with gets failing too, some commits that
    // landed can only be answered 503.
    name: "many lost responses on writes, and failing reads (commits that landed behind a 503)",
    seed: 7,
    settings: {
      lostResponseRate: 0.5,
      errorRate: 0.2,
      delayRate: 0.3,
      maxDelayMs: 3,
      ops: ["putIfAbsent", "put", "get"],
    },
  },
];

describe("a faulty rollout store under a mixed write load", () => {
  for (const profile of FAULT_PROFILES) {
    it(`${profile.name}: no 2xx without its durable commit, every failure a 503 + Retry-After, then the cache heals`, async () => {
      const { app, store, inner } = faultyApp(profile.seed);
      const seeded = await seedThreads(app);

      store.configure(profile.settings);
      const jobs = mixedLoad(app, seeded);
      const results = await Promise.all(jobs.map((job) => job.run()));
      store.configure({ errorRate: 0, lostResponseRate: 0, delayRate: 0 });

      // The faults really happened, and the load really got through some of the time:
      // writes acknowledged and writes refused. (How many is a matter of timing: a store
      // call that fails fails the whole group queued behind it, and how many writes queue
      // there depends on the scheduler, so no share is asserted.)
      expect(store.stats.errors + store.stats.lostResponses).toBeGreaterThanOrEqual(3);
      const unavailable = results.filter((r) => r.status === 503);
      expect(unavailable.length).toBeGreaterThan(0);
      const acknowledgedWrites = results.filter((r, i) => r.status < 300 && (jobs[i] as Job).kind !== "read");
      expect(acknowledgedWrites.length).toBeGreaterThan(0);

      // Every answer is an allowed one for its request, or a proper 503.
      results.forEach((r, i) => {
        const kind = (jobs[i] as Job).kind;
        if (r.status === 503) return expectProblem503(r);
        const allowed = ALLOWED[kind].find((a) => a.status === r.status);
        expect(allowed, `${kind} answered ${r.status} ${r.text}`).toBeDefined();
        if (allowed?.code) expect(r.json.code).toBe(allowed.code);
      });

      // Every 2xx write is durable in the store underneath, exactly as acknowledged.
      for (const threadId of THREADS) {
        const patches = await allPatches(inner, threadId);
        const bySeq = new Map(patches.map((p) => [p.seq, p]));
        const appendedSeqs: number[] = [];
        results.forEach((r, i) => {
          const job = jobs[i] as Job;
          if (job.threadId !== threadId || r.status >= 300 || job.kind === "read") return;
          if (job.kind === "remove") {
            const patch = bySeq.get(r.json.removed.seq);
            expect(patch, `remove acknowledged at seq ${r.json.removed.seq}`).toMatchObject({
              op: "remove",
              artifact: { id: r.json.removed.id },
            });
            appendedSeqs.push(r.json.removed.seq);
            return;
          }
          const artifact = r.json.artifact as Artifact;
          const patch = bySeq.get(artifact.seq);
          expect(patch, `${job.kind} acknowledged at seq ${artifact.seq}`).toBeDefined();
          expect(patch?.artifact).toEqual(artifact);
          if (r.status === 201) expect(patch?.op).toBe("add");
          if (job.kind === "update" || job.kind === "update-if-match") expect(patch?.op).toBe("update");
          // An idempotent 200 appended nothing; everything else owns its seq.
          if (!(job.kind === "identity" && r.status === 200)) appendedSeqs.push(artifact.seq);
        });
        expect(new Set(appendedSeqs).size, "two acknowledged writes share a seq").toBe(appendedSeqs.length);

        // Exactly one artifact per identity, whatever 503s and retries happened.
        const state = materialize(null, patches)!;
        const identities = state.artifacts.filter((a) => a.identityKey !== null).map((a) =>
          `${a.artifactType}/${a.identityKey}`
        );
        expect(new Set(identities).size).toBe(identities.length);
        const identityAcks = results.filter((r, i) =>
          (jobs[i] as Job).threadId === threadId && (jobs[i] as Job).kind === "identity" && r.status < 300
        );
        for (const r of identityAcks) {
          const current = state.artifacts.find((a) => a.identityKey === r.json.artifact.identityKey);
          expect(current?.id).toBe(r.json.artifact.id);
        }

        // The store behaves again: a strong read repairs what the faults left behind...
        const strong = await app.request("GET", path(threadId));
        expect(strong.status, strong.text).toBe(200);
        expect(["cache", "repaired"]).toContain(strong.headers.get("x-artifacts-source"));
        expect(strong.json).toEqual({ thread: threadView(state) });
        // ...and the cache alone now says the same.
        const cached = await app.request("GET", path(threadId, "?consistency=cache"));
        expect(cached.headers.get("x-artifacts-source")).toBe("cache");
        expect(cached.json).toEqual({ thread: threadView(state) });
      }

      expectOnlyInjectedFaultsLogged();

      // Writing goes on at the next seq.
      const next = await app.request("POST", path("alpha", "/artifacts"), { artifactType: "note", payload: "after" });
      expect(next.status).toBe(201);
      expect(next.json.artifact.seq).toBe((await allPatches(inner, "alpha")).length);
    });
  }
});

describe("the rollout store fully down", () => {
  it("writes and strong reads are 503 + Retry-After, /healthz is 503; all recover when it is back", async () => {
    const { app, store, truth } = faultyApp(3);
    const created = await app.request("POST", path("t", "/artifacts"), {
      artifactType: "doc",
      identityKey: "d",
      payload: 1,
    });
    expect(created.status).toBe(201);
    const id = created.json.artifact.id as string;
    expect((await app.request("GET", "/healthz")).json).toEqual({ ok: true, cache: "up", rollout: "up" });

    store.configure({ down: true });
    const attempts = [
      await app.request("POST", path("t", "/artifacts"), { artifactType: "doc", payload: 2 }),
      await app.request("POST", path("t", "/artifacts"), { artifactType: "doc", identityKey: "d", payload: 1 }),
      await app.request("POST", path("new-thread", "/artifacts"), { artifactType: "doc", payload: 3 }),
      await app.request("PATCH", path("t", `/artifacts/${id}`), { payload: 4 }),
      await app.request("DELETE", path("t", `/artifacts/${id}`)),
      await app.request("GET", path("t")),
      await app.request("GET", path("t", `/artifacts/${id}`)),
    ];
    for (const r of attempts) expectProblem503(r);
    const health = await app.request("GET", "/healthz");
    expect(health.status).toBe(503);
    expect(health.json).toEqual({ ok: false, cache: "up", rollout: "down" });

    expectOnlyInjectedFaultsLogged();

    store.configure({ down: false });
    expect((await truth.listCommits("local", "t", 0).then(patchesOf)).map((p) => p.seq)).toEqual([1]);
    expect(await truth.listCommits("local", "new-thread", 0)).toEqual([]);
    expect((await app.request("GET", "/healthz")).status).toBe(200);
    const after = await app.request("POST", path("t", "/artifacts"), { artifactType: "doc", payload: 5 });
    expect(after.status).toBe(201);
    expect(after.json.artifact.seq).toBe(2);
  });
});
