import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { ArtifactService } from "../../src/service/artifact-service.ts";
import { FILLER } from "./payload.ts";
import { StateCache } from "./state-cache.ts";

const ARTIFACTS = 100;

/**
 * Writes one thread per size through the real service, in this process (rollout in a
 * MemoryBlobStore, the cache port over in-memory states (state-cache.ts), snapshots every
 * 100 patches): 100 creates, then updates round-robin until the thread has `size`
 * patches, so every thread ends with the same 100 artifacts of ~1 KiB and only the
 * history length differs. Lays the patches out under `root` exactly as the fs adapter
 * keys them; the snapshots are written only by `addSnapshots()`, so one folder serves
 * both cases (first without snapshots, then with). Returns size → threadId.
 */
export async function prepareColdRollouts(
  sizes: number[],
  root: string,
): Promise<{ threads: Map<number, string>; addSnapshots: () => void }> {
  const store = new MemoryBlobStore();
  const cache = new StateCache();
  const service = new ArtifactService({
    rollout: new Rollout(store),
    cache,
    limits: { maxPayloadBytes: 65_536, maxArtifactsPerThread: 1000 },
    logger: { warn: (message, fields) => console.error(message, fields) },
  });
  const threads = new Map<number, string>();
  for (const size of sizes) {
    const threadId = `cold-${size}`;
    const ids: string[] = [];
    for (let seq = 1; seq <= size; seq++) {
      if (seq <= ARTIFACTS) {
        const result = await service.write("local", threadId, {
          kind: "create",
          artifactType: "bench.note",
          identityKey: null,
          payload: { i: seq, text: FILLER },
        });
        ids.push(result.artifact.id);
      } else {
        const artifactId = ids[(seq - 1) % ARTIFACTS] as string;
        await service.write("local", threadId, {
          kind: "update",
          artifactId,
          payload: { i: seq, text: FILLER },
          precondition: { kind: "any" },
        });
      }
    }
    threads.set(size, threadId);
  }
  const keys = await store.list("tenants/", { limit: Number.MAX_SAFE_INTEGER });
  const madeDirs = new Set<string>();
  const writeKey = async (key: string) => {
    const path = join(root, key);
    if (!madeDirs.has(dirname(path))) {
      mkdirSync(dirname(path), { recursive: true });
      madeDirs.add(dirname(path));
    }
    writeFileSync(path, (await store.get(key)) as string);
  };
  const snapshots = keys.filter((key) => key.includes("/snapshots/"));
  for (const key of keys) if (!key.includes("/snapshots/")) await writeKey(key);
  const snapshotBodies = new Map<string, string>();
  for (const key of snapshots) snapshotBodies.set(key, (await store.get(key)) as string);
  return {
    threads,
    addSnapshots: () => {
      for (const [key, body] of snapshotBodies) {
        mkdirSync(dirname(join(root, key)), { recursive: true });
        writeFileSync(join(root, key), body);
      }
    },
  };
}
