/**
 * Replay, for random histories written through the real service in random bursts (so
 * writes go as groups of any size, one commit object each) with a random compaction
 * cadence: replay(commits + compaction objects) = replay(commits), and so do every
 * delta, every snapshot, every seq's event log read from the rollout (inside a commit
 * too), the state right after every seq and the whole patch list (history.ts), the cache written along the way and a fresh cache repaired from the rollout;
 * and the rollout holds at most 3x the commits' own bytes.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import { LibsqlCache } from "../../src/cache/libsql.ts";
import { parseThreadJson, type ThreadState } from "../../src/model/artifact.ts";
import type { WriteCommand } from "../../src/model/decide.ts";
import type { JsonValue } from "../../src/model/json.ts";
import { materialize } from "../../src/model/materialize.ts";
import { patchesOf } from "../../src/model/patch.ts";
import { parseCommit, parseSnapshot } from "../../src/rollout/format.ts";
import { commitsPrefix, deltasPrefix, rangeOfDeltaKey, snapshotsPrefix, threadPrefix } from "../../src/rollout/keys.ts";
import { allPatches, stateAt } from "../../src/rollout/history.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { ArtifactService } from "../../src/service/artifact-service.ts";
import { objectStoreView } from "../support/object-store-view.ts";

/** A write chosen by the generator; `index` picks among the live artifacts at that point. */
type Step =
  | { kind: "create"; artifactType: string; identityKey: string | null; payload: JsonValue }
  | { kind: "update"; index: number; payload: JsonValue }
  | { kind: "remove"; index: number };

const payload = fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<JsonValue>;
const create: fc.Arbitrary<Step> = fc.record({
  kind: fc.constant("create" as const),
  artifactType: fc.constantFrom("plan", "note"),
  identityKey: fc.option(fc.constantFrom("a", "b", "c"), { nil: null }),
  payload,
});
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: create },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("update" as const), index: fc.nat(), payload }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("remove" as const), index: fc.nat() }) },
);
/** Steps sent at once: they queue on the thread and go as one group. */
const burst = fc.array(step, { minLength: 1, maxLength: 6 });

const dir = mkdtempSync(join(tmpdir(), "artifacts-property-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function libsqlCache(name: string): LibsqlCache {
  return new LibsqlCache({
    connect: () => createClient({ url: `file:${join(dir, name)}`, concurrency: 1 }),
    local: true,
  });
}

const sharedCache = libsqlCache("shared.db");
let threadCounter = 0;
const T = "local";
const encoder = new TextEncoder();

describe("replay", () => {
  it("replay(commits + compaction objects) = replay(commits), at every seq and from every object", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(burst, { minLength: 1, maxLength: 14 }),
        fc.integer({ min: 1, max: 7 }),
        async (bursts, everyPatches) => {
          const threadId = `prop-${++threadCounter}`;
          const store = new MemoryBlobStore();
          const rollout = new Rollout(store);
          const background: Promise<void>[] = [];
          const service = new ArtifactService({
            rollout,
            cache: sharedCache,
            limits: { maxPayloadBytes: 65536, maxArtifactsPerThread: 1000 },
            compaction: { everyPatches },
            background: (work) => void background.push(work),
          });
          let live: string[] = [];
          for (const steps of bursts) {
            const writes = steps.map((s): WriteCommand | null => {
              if (s.kind === "create") {
                return { kind: "create", artifactType: s.artifactType, identityKey: s.identityKey, payload: s.payload };
              }
              if (live.length === 0) return null;
              const artifactId = live[s.index % live.length] as string;
              return s.kind === "update"
                ? { kind: "update", artifactId, payload: s.payload, precondition: { kind: "any" } }
                : { kind: "remove", artifactId, precondition: { kind: "any" } };
            });
            const results = await Promise.all(
              writes.map((command) =>
                command &&
                service.write(T, threadId, command).catch((error: { code?: string }) => {
                  // Outcomes of the policy, decided in order inside the group.
                  if (error.code === "identity_conflict" || error.code === "artifact_not_found") return null;
                  throw error;
                })
              ),
            );
            for (const result of results) {
              if (result?.op === "add") live.push(result.artifact.id);
              if (result?.op === "remove") live = live.filter((id) => id !== result.artifact.id);
            }
          }
          await Promise.all(background);

          const commits = await rollout.listCommits(T, threadId, 0);
          const patches = patchesOf(commits);
          const scratch = materialize(null, patches);
          expect(patches.map((p) => p.seq)).toEqual(patches.map((_, i) => i + 1));
          expect(scratch?.artifacts.map((a) => a.id) ?? []).toEqual(live);
          if (!scratch) return;

          // The cold read (pointer, snapshot, deltas, tail) is the replay.
          expect(await rollout.load(T, threadId)).toEqual(scratch);
          const parts = await rollout.loadParts(T, threadId);
          expect(materialize(parts.base, patchesOf(parts.tail))).toEqual(scratch);
          if (parts.base) expect(parts.base).toEqual(materialize(null, patches.slice(0, parts.base.seq)));

          // Every delta is exactly its commits' patches; every snapshot the state at its seq.
          for (const key of await store.list(deltasPrefix(T, threadId))) {
            const range = rangeOfDeltaKey(key)!;
            const delta = parseCommit((await store.get(key))!, key, threadId);
            expect(delta.patches).toEqual(patches.slice(range.firstSeq - 1, range.lastSeq));
            expect(
              commits.some((c) => c.firstSeq === range.firstSeq) && commits.some((c) => c.lastSeq === range.lastSeq),
            ).toBe(true);
          }
          for (const key of await store.list(snapshotsPrefix(T, threadId))) {
            const snapshot = parseSnapshot((await store.get(key))!, key) as ThreadState;
            expect(snapshot).toEqual(materialize(null, patches.slice(0, snapshot.seq)));
            expect(materialize(snapshot, patches.slice(snapshot.seq))).toEqual(scratch);
          }

          // The event log from the rollout, after every seq (at a commit boundary or inside one).
          for (let after = 0; after <= patches.length; after++) {
            const read = await rollout.patchesAfter(T, threadId, after, 1000);
            expect(read).toEqual(patches.slice(after));
          }

          // The past: the state right after every seq, and every patch, from compaction objects and
          // commits, read as from a local store and as from an object store (one listing finds them).
          const far = new Rollout(objectStoreView(store));
          for (let seq = 0; seq <= patches.length + 1; seq++) {
            const expected = seq >= 1 && seq <= patches.length ? materialize(null, patches.slice(0, seq)) : null;
            expect(await stateAt(rollout, T, threadId, seq)).toEqual(expected);
            expect(await stateAt(far, T, threadId, seq)).toEqual(expected);
          }
          expect(await allPatches(rollout, T, threadId)).toEqual(patches);
          expect(await allPatches(far, T, threadId)).toEqual(patches);

          // At most 3x the commits' bytes in all.
          const bytesUnder = async (prefix: string) => {
            let sum = 0;
            for (const key of await store.list(prefix, { limit: 100_000 })) {
              sum += encoder.encode((await store.get(key))!).byteLength;
            }
            return sum;
          };
          const commitBytes = await bytesUnder(commitsPrefix(T, threadId));
          expect(await bytesUnder(threadPrefix(T, threadId))).toBeLessThanOrEqual(3 * commitBytes + 1024);

          // The cache written along the way, and a fresh cache repaired from the rollout, equal the replay.
          expect(await sharedCache.readThread(T, threadId)).toEqual(scratch);
          const freshCache = libsqlCache(`${threadId}.db`);
          const fresh = new ArtifactService({
            rollout,
            cache: freshCache,
            limits: { maxPayloadBytes: 65536, maxArtifactsPerThread: 1000 },
          });
          const read = await fresh.readThread(T, threadId, { consistency: "strong" });
          expect(read.source).toBe("repaired");
          expect(parseThreadJson(read.thread)).toEqual(scratch);
          expect(await freshCache.readThread(T, threadId)).toEqual(scratch);
          freshCache.close();
        },
      ),
      { numRuns: 60 },
    );
  });
});
