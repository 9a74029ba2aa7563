/**
 * The client's thread store (src/client/thread-store.ts) against the real app in process,
 * for random interleavings of: writes by another client, optimistic writes of the store
 * that succeed or fail (stale If-Match → 412, identity conflicts → 409, a missing
 * artifact → 404, a thread deleted under them), writes whose requests fail before the
 * server or lose their answer after it (retried with the same Idempotency-Key, or rolled
 * back after the retries), dropped and paused streams, lost events (a gap: the store reads
 * again), resumes the server refuses (the store reads again), write answers held back (so
 * events come first) and thread deletes. Local writes are not awaited as they are issued. Then:
 * - every snapshot a listener is told of, and the one after every step, shows each artifact
 *   once, and never a create's pending artifact beside the artifact its answer names; a
 *   create's answer shows its artifact at once, however far behind the stream is;
 * - a write that settled left nothing of itself pending (a create's pending id is gone),
 *   and once every write settled, nothing is pending at all;
 * - after a last write by the other client (seq `head`), the store reaches `head`, and
 *   its thread equals the server's read at `head`: artifacts (ids, versions, seqs,
 *   payloads, times), createdAt and updatedAt.
 */
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { createArtifactsClient, type JsonValue, type ThreadStore, type WriteResponse } from "../../src/client/index.ts";
import { controlledFetch, type WriteFault } from "../support/controlled-fetch.ts";
import { useTestApps } from "../support/in-process.ts";
import { waitFor } from "../support/wait.ts";

type Version = "current" | "stale" | "none";
type Command =
  | { kind: "otherCreate"; artifactType: string; identityKey: string | null; payload: JsonValue }
  | { kind: "otherUpdate"; index: number; payload: JsonValue }
  | { kind: "otherRemove"; index: number }
  | { kind: "otherDelete" }
  | { kind: "create"; artifactType: string; identityKey: string | null; payload: JsonValue }
  | { kind: "update"; index: number; payload: JsonValue; version: Version }
  | { kind: "merge"; index: number; patch: JsonValue; version: Version }
  | { kind: "remove"; index: number; missing: boolean }
  | { kind: "faults"; faults: Array<"before" | "after"> }
  | { kind: "drop" }
  | { kind: "lose" }
  | { kind: "refuse" }
  | { kind: "pause" }
  | { kind: "resume" }
  | { kind: "hold" }
  | { kind: "release" }
  | { kind: "settle" };

// Few distinct values, so identities collide with equal payloads (200) and different ones (409).
const payload = fc.oneof(
  fc.constantFrom<JsonValue>(1, "x", null, [1, 2]),
  fc.record({ a: fc.constantFrom<JsonValue>(1, 2, null), b: fc.constantFrom<JsonValue>("s", { c: 1 }) }),
) as fc.Arbitrary<JsonValue>;
const patch = fc.record({
  a: fc.constantFrom<JsonValue>(1, 3, null),
  d: fc.constantFrom<JsonValue>(true, null, { e: 1 }),
}, { requiredKeys: [] }) as fc.Arbitrary<JsonValue>;
const artifactType = fc.constantFrom("plan", "note");
const identityKey = fc.option(fc.constantFrom("a", "b"), { nil: null });
const version = fc.constantFrom<Version>("current", "stale", "none");

const command: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant("otherCreate" as const), artifactType, identityKey, payload }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("otherUpdate" as const), index: fc.nat(), payload }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("otherRemove" as const), index: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ kind: "otherDelete" as const }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("create" as const), artifactType, identityKey, payload }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("update" as const), index: fc.nat(), payload, version }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("merge" as const), index: fc.nat(), patch, version }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("remove" as const), index: fc.nat(), missing: fc.boolean() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("faults" as const),
      faults: fc.array(fc.constantFrom("before" as const, "after" as const), { minLength: 1, maxLength: 3 }),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ kind: "drop" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "lose" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "refuse" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "pause" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "resume" as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: "hold" as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: "release" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "settle" as const }) },
);

const BASE = "http://artifacts.test";
const MISSING_ID = "0193f0c2-7d4a-7c1e-9b1a-3f9d2c1e8a77";
let runs = 0;

describe("thread store", () => {
  const apps = useTestApps();
  const open: ThreadStore[] = [];
  afterEach(() => {
    for (const store of open.splice(0)) store.close();
  });

  it("settles on the server's state; no write stays pending past its answer", async () => {
    const app = apps();
    const direct = async (input: RequestInfo | URL, init?: RequestInit) => await app.app.request(input as string, init);
    const other = createArtifactsClient({ baseUrl: BASE, fetch: direct });

    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 24 }), async (commands) => {
        const threadId = `prop-store-${++runs}`;
        const control = controlledFetch(app.app);
        const client = createArtifactsClient({ baseUrl: BASE, fetch: control.fetch });
        const store = client.watchThread(threadId, { minBackoffMs: 2, maxBackoffMs: 20, writeRetries: 2 });
        open.push(store);
        const violations: string[] = [];
        const writes: Promise<unknown>[] = [];
        let outstanding = 0;
        let release: (() => void) | null = null;
        let paused = false;

        const uniqueIds = (where: string) => {
          const ids = store.getSnapshot().thread?.artifacts.map((a) => a.id) ?? [];
          if (new Set(ids).size !== ids.length) violations.push(`${where}: an artifact shown twice: ${ids}`);
        };
        /** Tracks a store write: when it settles, nothing of it (or, last of all, of any write) is pending. */
        const track = (promise: Promise<unknown>, label: string, pendingId?: string) => {
          outstanding++;
          if (pendingId !== undefined) {
            // Exactly one copy: no snapshot ever showed the pending artifact beside the one its answer names.
            promise.then((answer) => {
              const { id, seq } = (answer as WriteResponse).artifact;
              if (seen.some((s) => s.has(pendingId) && s.has(id))) {
                violations.push(`${label}: shown twice, as ${id} too`);
              }
              // Shown at once, the stream behind or not (unless a later event removed it, or a later write hides it).
              const now = store.getSnapshot();
              if (now.pendingWrites === 0 && now.seq <= seq && !now.thread?.artifacts.some((a) => a.id === id)) {
                violations.push(`${label}: its answer's artifact is not shown`);
              }
            }, () => {});
          }
          writes.push(
            promise.then(() => undefined, () => undefined).then(() => {
              outstanding--;
              const snapshot = store.getSnapshot();
              const artifacts = snapshot.thread?.artifacts ?? [];
              if (pendingId !== undefined && artifacts.some((a) => a.id === pendingId)) {
                violations.push(`${label}: its pending artifact outlived its answer`);
              }
              if (outstanding === 0 && (snapshot.pendingWrites !== 0 || artifacts.some((a) => a.pending))) {
                violations.push(`${label}: every write settled, something still pending`);
              }
            }),
          );
        };
        const shown = () => store.getSnapshot().thread?.artifacts ?? [];
        const serverArtifacts = async () => {
          try {
            return (await other.readThread(threadId)).artifacts;
          } catch {
            return [];
          }
        };
        const ifVersion = (v: Version, current: number) =>
          v === "current" ? { ifVersion: current } : v === "stale" ? { ifVersion: current + 7 } : {};

        /** The artifact ids of every snapshot listeners were told of. */
        const seen: Set<string>[] = [];
        store.subscribe(() => {
          uniqueIds("a snapshot a listener was told of");
          seen.push(new Set(store.getSnapshot().thread?.artifacts.map((a) => a.id)));
        });
        await waitFor("the store's first read", () => store.getSnapshot().thread !== null);
        for (const [step, c] of commands.entries()) {
          switch (c.kind) {
            case "otherCreate":
              await other.createArtifact(threadId, {
                artifactType: c.artifactType,
                payload: c.payload,
                ...(c.identityKey === null ? {} : { identityKey: c.identityKey }),
              }).catch(() => {});
              break;
            case "otherUpdate":
            case "otherRemove": {
              const list = await serverArtifacts();
              const target = list[c.index % Math.max(1, list.length)];
              if (!target) break;
              if (c.kind === "otherUpdate") await other.updateArtifact(threadId, target.id, c.payload).catch(() => {});
              else await other.removeArtifact(threadId, target.id).catch(() => {});
              break;
            }
            case "otherDelete":
              await other.deleteThread(threadId).catch(() => {});
              break;
            case "create": {
              const created = store.createArtifact({
                artifactType: c.artifactType,
                payload: c.payload,
                ...(c.identityKey === null ? {} : { identityKey: c.identityKey }),
              });
              track(created, `step ${step} create`, created.pendingId);
              break;
            }
            case "update":
            case "merge":
            case "remove": {
              const list = shown();
              const target = list[c.index % Math.max(1, list.length)];
              if (c.kind === "remove") {
                const id = c.missing || !target ? MISSING_ID : target.id;
                track(store.removeArtifact(id), `step ${step} remove`);
              } else if (target) {
                const options = ifVersion(c.version, target.version);
                track(
                  c.kind === "update"
                    ? store.updateArtifact(target.id, c.payload, options)
                    : store.mergeArtifact(target.id, c.patch, options),
                  `step ${step} ${c.kind}`,
                );
              }
              break;
            }
            case "faults":
              control.failWrites(...c.faults.map((kind): WriteFault => ({ kind })));
              break;
            case "drop":
              control.dropStreams();
              break;
            case "lose":
              control.loseNextChunk((text) => text.includes("event: artifact-updated"));
              break;
            case "refuse": {
              // One refusal at a time: two in a row, with no stream open between, is an error for good.
              // Not while streams are paused: no stream can open to show the resume read again.
              if (control.streamFaultsLeft > 0 || paused) break;
              control.failStreams({ kind: "respond", status: 400, code: "invalid_request" });
              control.dropStreams();
              await waitFor("the refused resume read again and followed", () => {
                const s = store.getSnapshot();
                return control.streamFaultsLeft === 0 && control.openStreams > 0 && s.status !== "error";
              });
              break;
            }
            case "pause":
              control.pauseStreams();
              paused = true;
              break;
            case "resume":
              control.resumeStreams();
              paused = false;
              break;
            case "hold":
              release ??= control.holdAnswers();
              break;
            case "release": {
              if (!release) break;
              // Events first: the store catches up with the writes whose answers are held, then they come.
              const head = await other.readThread(threadId).then((t) => t.rolloutSeq, () => null);
              if (head !== null && !paused) {
                control.loseNextChunk(null);
                // A lost last event shows no gap until a later event or a new stream (at the
                // latest the stream's lifetime end): end this one, as that would.
                if (control.lossUnrevealed) control.dropStreams();
                await waitFor(`the store at ${head} before the held answers`, () => store.getSnapshot().seq >= head);
              }
              release();
              release = null;
              break;
            }
            case "settle":
              release?.();
              release = null;
              await Promise.all(writes);
              break;
          }
          uniqueIds(`after step ${step} (${c.kind})`);
        }

        release?.();
        control.resumeStreams();
        await Promise.all(writes);
        control.clearFaults();
        uniqueIds("after every write settled");
        expect(violations).toEqual([]);

        // The other client's last write is the head: the store reaches it and equals the server there.
        const head = (await other.createArtifact(threadId, { artifactType: "marker", payload: runs })).artifact.seq;
        const snapshot = await waitFor(`the store at seq ${head}`, () => {
          const s = store.getSnapshot();
          return s.seq === head && s;
        });
        const server = await other.readThread(threadId);
        expect(server.rolloutSeq).toBe(head);
        expect(snapshot.status).toBe("live");
        expect(snapshot.pendingWrites).toBe(0);
        expect(snapshot.thread?.artifacts).toEqual(server.artifacts);
        expect(snapshot.thread?.rolloutSeq).toBe(server.rolloutSeq);
        expect(snapshot.thread?.createdAt).toBe(server.createdAt);
        expect(snapshot.thread?.updatedAt).toBe(server.updatedAt);
        store.close();
      }),
      // PROPERTY_SEED / PROPERTY_RUNS: a longer run with a chosen seed (default: 40 runs, fast-check's random seed).
      {
        numRuns: Number(process.env.PROPERTY_RUNS ?? 40),
        ...(process.env.PROPERTY_SEED ? { seed: Number(process.env.PROPERTY_SEED) } : {}),
      },
    );
  });
});
