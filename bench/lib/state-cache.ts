import type { ArtifactCache, CachedContext, EventPage, TargetLookup } from "../../src/cache/port.ts";
import { type Artifact, type ThreadJson, type ThreadState, toThreadJson } from "../../src/model/artifact.ts";
import { materialize } from "../../src/model/materialize.ts";
import type { Commit } from "../../src/model/patch.ts";

/**
 * A cache port over plain in-memory thread states, for preparing rollouts fast in the
 * bench (libSQL would spend most of the preparation re-preparing statements). Same
 * contract where the write path uses it: a contiguous prefix, commits applied only on
 * top of their predecessor. The thread list and event log are not kept.
 */
export class StateCache implements ArtifactCache {
  readonly #threads = new Map<string, ThreadState>();
  #key = (tenant: string, threadId: string) => `${tenant}\u0000${threadId}`;

  async apply(tenant: string, commits: readonly Commit[]): Promise<number> {
    const first = commits[0];
    if (!first) return -1;
    const key = this.#key(tenant, first.threadId);
    let state = this.#threads.get(key) ?? null;
    for (const commit of commits) {
      if ((state?.seq ?? 0) !== commit.firstSeq - 1) break;
      state = materialize(state, commit.patches);
    }
    if (state) this.#threads.set(key, state);
    return state?.seq ?? 0;
  }

  async install(tenant: string, state: ThreadState): Promise<number> {
    const key = this.#key(tenant, state.threadId);
    if (!this.#threads.has(key)) this.#threads.set(key, state);
    return (this.#threads.get(key) as ThreadState).seq;
  }

  async seq(tenant: string, threadId: string): Promise<number> {
    return this.#threads.get(this.#key(tenant, threadId))?.seq ?? 0;
  }

  async readThreadJson(tenant: string, threadId: string): Promise<ThreadJson | null> {
    const state = this.#threads.get(this.#key(tenant, threadId));
    return state ? toThreadJson(state) : null;
  }

  async readThread(tenant: string, threadId: string): Promise<ThreadState | null> {
    return this.#threads.get(this.#key(tenant, threadId)) ?? null;
  }

  async writeContext(tenant: string, threadId: string, lookups: readonly TargetLookup[]): Promise<CachedContext> {
    const state = this.#threads.get(this.#key(tenant, threadId));
    if (!state) return { seq: 0, artifactCount: 0, targets: lookups.map(() => null), updatedAt: null };
    const targets = lookups.map((target) => {
      if (target.by === "id") return state.artifacts.find((a) => a.id === target.artifactId) ?? null;
      if (target.identityKey === null) return null;
      return state.artifacts.find((a) =>
        a.artifactType === target.artifactType && a.identityKey === target.identityKey
      ) ?? null;
    });
    return { seq: state.seq, artifactCount: state.artifacts.length, targets, updatedAt: state.updatedAt };
  }

  async getArtifact(
    tenant: string,
    threadId: string,
    artifactId: string,
  ): Promise<{ seq: number; artifact: Artifact | null }> {
    const state = this.#threads.get(this.#key(tenant, threadId));
    return { seq: state?.seq ?? 0, artifact: state?.artifacts.find((a) => a.id === artifactId) ?? null };
  }

  async listThreads(): Promise<ThreadState[]> {
    throw new Error("StateCache keeps no thread list");
  }

  async changedThreads(): Promise<never[]> {
    throw new Error("StateCache keeps no thread list");
  }

  async events(tenant: string, threadId: string): Promise<EventPage> {
    const seq = await this.seq(tenant, threadId);
    // No log kept: everything up to the head is "below the floor", i.e. read from the rollout.
    return { seq, floor: seq, lifeStart: 0, events: [] };
  }

  eventsMany(tenant: string, reads: readonly { threadId: string }[], _limit: number): Promise<EventPage[]> {
    return Promise.all(reads.map((read) => this.events(tenant, read.threadId)));
  }

  async ping(): Promise<void> {}

  close(): void {}
}
