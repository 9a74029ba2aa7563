import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import { Rollout } from "../../src/rollout/rollout.ts";
import { ArtifactService } from "../../src/service/artifact-service.ts";
import { FILLER } from "./payload.ts";
import { StateCache } from "./state-cache.ts";

/** The artifacts every cold thread ends with: 1,000 of ~1 KiB (about 1 MB of state). */
export const COLD_ARTIFACTS = 1000;

export interface ColdThread {
  threadId: string;
  /** Patches and commit objects the thread was written as. */
  patches: number;
  commits: number;
  /** Bytes of the commit objects alone, and of everything the thread holds (commits + compaction). */
  commitBytes: number;
  rolloutBytes: number;
}

export interface ColdThreadSpec {
  name: string;
  /** Writes after the 1,000 creates: updates round-robin over the artifacts. */
  updates: number;
  /** Writes sent at once (they go as groups of about this size); 1 = a commit per write. */
  burst: number;
}

/**
 * Writes each thread through the real service in this process (rollout in a
 * MemoryBlobStore, compaction on with its defaults, the cache port over in-memory states
 * (state-cache.ts)): 1,000 creates, then updates round-robin, `burst` at a time, so the
 * writes go as groups of that size. Lays every object out under `root` exactly as the fs
 * adapter keys them, and returns each thread's shape and the compaction files (deleting
 * them makes a cold read replay the commits: the comparison).
 */
export async function prepareColdRollouts(
  specs: readonly ColdThreadSpec[],
  root: string,
): Promise<{ threads: Map<string, ColdThread>; compactionFiles: string[] }> {
  const store = new MemoryBlobStore();
  const rollout = new Rollout(store);
  const service = new ArtifactService({
    rollout,
    cache: new StateCache(),
    limits: { maxPayloadBytes: 65_536, maxArtifactsPerThread: COLD_ARTIFACTS },
  });
  const threads = new Map<string, ColdThread>();
  for (const spec of specs) {
    const threadId = `cold-${spec.name}`;
    const ids: string[] = [];
    for (let start = 0; start < COLD_ARTIFACTS; start += spec.burst) {
      const burst = Array.from({ length: Math.min(spec.burst, COLD_ARTIFACTS - start) }, (_, k) => start + k);
      const results = await Promise.all(burst.map((i) =>
        service.write("local", threadId, {
          kind: "create",
          artifactType: "bench.note",
          identityKey: null,
          payload: { i, text: FILLER },
        })
      ));
      ids.push(...results.map((r) => (r.op === "delete" ? "" : r.artifact.id)));
    }
    for (let start = 0; start < spec.updates; start += spec.burst) {
      const burst = Array.from({ length: Math.min(spec.burst, spec.updates - start) }, (_, k) => start + k);
      await Promise.all(burst.map((u) =>
        service.write("local", threadId, {
          kind: "update",
          artifactId: ids[u % COLD_ARTIFACTS] as string,
          payload: { u, text: FILLER },
          precondition: { kind: "any" },
        })
      ));
    }
    await service.idle();
    const prefix = `tenants/local/threads/${threadId}/`;
    const keys = await store.list(prefix, { limit: Number.MAX_SAFE_INTEGER });
    let commitBytes = 0;
    let rolloutBytes = 0;
    let commits = 0;
    for (const key of keys) {
      const bytes = Buffer.byteLength((await store.get(key)) as string);
      rolloutBytes += bytes;
      if (key.includes("/commits/")) {
        commits++;
        commitBytes += bytes;
      }
    }
    threads.set(spec.name, {
      threadId,
      patches: COLD_ARTIFACTS + spec.updates,
      commits,
      commitBytes,
      rolloutBytes,
    });
  }
  const keys = await store.list("tenants/", { limit: Number.MAX_SAFE_INTEGER });
  const madeDirs = new Set<string>();
  const compactionFiles: string[] = [];
  for (const key of keys) {
    const path = join(root, key);
    if (!madeDirs.has(dirname(path))) {
      mkdirSync(dirname(path), { recursive: true });
      madeDirs.add(dirname(path));
    }
    writeFileSync(path, (await store.get(key)) as string);
    if (!key.includes("/commits/")) compactionFiles.push(path);
  }
  return { threads, compactionFiles };
}
