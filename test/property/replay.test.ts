import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import { LibsqlCache } from "../../src/cache/libsql.ts";
import { parseThreadJson, type ThreadState } from "../../src/model/artifact.ts";
import type { JsonValue } from "../../src/model/json.ts";
import { materialize } from "../../src/model/materialize.ts";
import { parseSnapshot } from "../../src/model/patch.ts";
import { snapshotsPrefix } from "../../src/rollout/keys.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { ArtifactService } from "../../src/service/artifact-service.ts";

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

describe("replay", () => {
  it("from any snapshot, from scratch and the cache all agree", async () => {
    await fc.assert(
      fc.asyncProperty(
        create,
        fc.array(step, { maxLength: 40 }),
        fc.integer({ min: 1, max: 7 }),
        async (first, rest, snapshotEvery) => {
          const steps = [first, ...rest];
          const threadId = `prop-${++threadCounter}`;
          const rollout = new Rollout(new MemoryBlobStore(), { snapshotEvery });
          const service = new ArtifactService({
            rollout,
            cache: sharedCache,
            limits: { maxPayloadBytes: 65536, maxArtifactsPerThread: 1000 },
          });
          let live: string[] = [];
          for (const s of steps) {
            if (s.kind === "create") {
              const result = await service
                .write("local", threadId, {
                  kind: "create",
                  artifactType: s.artifactType,
                  identityKey: s.identityKey,
                  payload: s.payload,
                })
                .catch((error: { code?: string }) => {
                  if (error.code === "identity_conflict") return null;
                  throw error;
                });
              if (result?.created) live.push(result.artifact.id);
            } else if (live.length > 0) {
              const id = live[s.index % live.length] as string;
              if (s.kind === "update") {
                await service.write("local", threadId, {
                  kind: "update",
                  artifactId: id,
                  payload: s.payload,
                  precondition: { kind: "any" },
                });
              } else {
                await service.write("local", threadId, {
                  kind: "remove",
                  artifactId: id,
                  precondition: { kind: "any" },
                });
                live = live.filter((x) => x !== id);
              }
            }
          }

          const patches = await rollout.readPatches("local", threadId, 0);
          const scratch = materialize(null, patches) as ThreadState;
          expect(patches.map((p) => p.seq)).toEqual(patches.map((_, i) => i + 1));
          expect(scratch.artifacts.map((a) => a.id)).toEqual(live);

          // Replay split at every point equals replay from scratch.
          for (let k = 0; k <= patches.length; k++) {
            expect(materialize(materialize(null, patches.slice(0, k)), patches.slice(k))).toEqual(scratch);
          }
          // Every snapshot the writer took is the state at its seq, and replays to the same head.
          const snapshotKeys = await rollout.store.list(snapshotsPrefix("local", threadId));
          expect(snapshotKeys.length).toBe(Math.floor(patches.length / snapshotEvery));
          for (const key of snapshotKeys) {
            const { v: _v, ...snapshot } = parseSnapshot((await rollout.store.get(key)) as string, key);
            expect(snapshot).toEqual(materialize(null, patches.slice(0, snapshot.seq)));
            expect(materialize(snapshot, patches.slice(snapshot.seq))).toEqual(scratch);
          }
          expect(await rollout.load("local", threadId)).toEqual(scratch);
          // The cache written along the way, and a fresh cache repaired from the rollout, equal the replay.
          expect(await sharedCache.readThread("local", threadId)).toEqual(scratch);
          const freshCache = libsqlCache(`${threadId}.db`);
          const fresh = new ArtifactService({
            rollout,
            cache: freshCache,
            limits: { maxPayloadBytes: 65536, maxArtifactsPerThread: 1000 },
          });
          const read = await fresh.readThread("local", threadId, { consistency: "strong" });
          expect(read.source).toBe("repaired");
          expect(parseThreadJson(read.thread)).toEqual(scratch);
          expect(await freshCache.readThread("local", threadId)).toEqual(scratch);
          freshCache.close();
        },
      ),
      { numRuns: 60 },
    );
  });
});
