import type { ThreadState } from "../model/artifact.ts";
import type { GroupContext, TargetLookup } from "../model/decide.ts";
import { findKey } from "../model/idempotency.ts";
import { materialize } from "../model/materialize.ts";
import { patchesOf } from "../model/patch.ts";
import type { Rollout } from "../rollout/rollout.ts";
import type { CacheGuard } from "./cache-guard.ts";
import type { CacheRepairer } from "./cache-repairer.ts";
import { KnownHeads } from "./known-heads.ts";

/**
 * What a round of a group is decided on. The cache, normally (it is read for the
 * context, and the put-if-absent of the next seq checks it); or a state of the thread
 * the writer holds: the resident one, or, once the cache has failed this group, the one
 * read from the rollout, carried from round to round; with when the store confirmed it.
 */
export type Basis = { from: "cache" } | { from: "state"; state: ThreadState | null; at: number };

/** One round's context, the basis it leaves, and whether it came from a remembered head. */
export interface Round {
  context: GroupContext;
  basis: Basis;
  fromKnownHead: boolean;
}

/** Threads whose head this process remembers at most (~100 bytes each). */
const MAX_KNOWN_HEADS = 10_000;

/** How long a thread another process wrote is decided on cache reads only (see KnownHeads). */
const SHARED_THREAD_MS = 30_000;

export interface WriteBasisOptions {
  rollout: Rollout;
  guard: CacheGuard;
  repairer: CacheRepairer;
  /** The oldest head a round may be decided on (see GroupWriterOptions.freshMs). */
  freshMs: number;
  now: () => Date;
}

/**
 * Where a group's context comes from, and how a writer that lost a race learns what the
 * winner wrote: the head this process remembers (plain creates), the cache, or a state
 * read from the rollout. Never a head older than `freshMs`: remembered heads that old
 * are forgotten, and a cache row that old is checked against the thread's life marker.
 */
export class WriteBasis {
  readonly heads: KnownHeads;
  readonly #o: WriteBasisOptions;

  constructor(options: WriteBasisOptions) {
    this.#o = options;
    this.heads = new KnownHeads({
      max: MAX_KNOWN_HEADS,
      sharedForMs: SHARED_THREAD_MS,
      freshForMs: options.freshMs,
      now: () => options.now().getTime(),
    });
  }

  /**
   * The context a round is decided on: for plain creates, the head this process last
   * committed (checked by the put-if-absent of the next seq like any context); else the
   * cache; or the state the group carries (resident, or read once the cache failed).
   */
  async contextFor(
    tenant: string,
    threadId: string,
    lookups: readonly TargetLookup[],
    keys: readonly (string | null)[],
    basis: Basis,
    onlyCreates: boolean,
  ): Promise<Round> {
    if (basis.from === "state") {
      return { context: contextFromState(basis.state, lookups, keys), basis, fromKnownHead: false };
    }
    const known = this.heads.get(tenant, threadId);
    // Forks and deletes look nothing up either, but are decided on whether the thread lives: read it.
    // A keyed write looks its key up (in the cache), whoever wrote the thread last.
    if (known && onlyCreates && lookups.every(needsNoTarget) && keys.every((key) => key === null)) {
      return { context: { ...known, targets: lookups.map(() => null) }, basis, fromKnownHead: true };
    }
    const cached = await this.#o.guard.try(
      "writeContext",
      (cache) => cache.writeContext(tenant, threadId, lookups, keys),
    );
    if (cached.ok) {
      const { updatedAt, ...context } = cached.value;
      // A row this old may predate a delete whose stubs are gone by now (a cache restored
      // from a backup, or one that missed the delete): the life marker tells. No row needs
      // no check: seq 1's key is never freed, so a put there finds any thread that was.
      const old = updatedAt !== null && this.#now() - Date.parse(updatedAt) > this.#o.freshMs;
      if (!old || (await this.#o.rollout.lifeBoundary(tenant, threadId)) <= context.seq) {
        return { context, basis, fromKnownHead: false };
      }
    }
    const state = await this.#o.rollout.load(tenant, threadId);
    return {
      context: contextFromState(state, lookups, keys),
      basis: { from: "state", state, at: this.#now() },
      fromKnownHead: false,
    };
  }

  /** After a lost race at `seq`: the commits since, onto the cache (or onto the carried state once the cache failed). */
  async catchUp(tenant: string, threadId: string, seq: number, basis: Basis): Promise<Basis> {
    if (basis.from === "state" && basis.state) {
      const tail = await this.#o.rollout.followCommits(tenant, threadId, basis.state.seq);
      return { from: "state", state: materialize(basis.state, patchesOf(tail)), at: this.#now() };
    }
    if (basis.from === "cache") {
      const tail = seq > 0 ? await this.#o.rollout.followCommits(tenant, threadId, seq) : undefined;
      const caughtUp = await this.#o.guard.try(
        "repair",
        () => this.#o.repairer.repairFrom(tenant, threadId, seq, tail),
      );
      if (caughtUp.ok) return basis;
    }
    const state = await this.#o.rollout.load(tenant, threadId);
    return { from: "state", state, at: this.#now() };
  }

  #now(): number {
    return this.#o.now().getTime();
  }
}

/** A create without an identityKey never matches an existing artifact: it needs no lookup. */
function needsNoTarget(lookup: TargetLookup): boolean {
  return lookup.by === "identity" && lookup.identityKey === null;
}

function contextFromState(
  state: ThreadState | null,
  lookups: readonly TargetLookup[],
  keys: readonly (string | null)[],
): GroupContext {
  if (!state) return { seq: 0, artifactCount: 0, targets: lookups.map(() => null) };
  const found = keys.map((key) => key === null ? null : findKey(state.recentKeys, key));
  if (state.deleted) {
    return { seq: state.seq, artifactCount: 0, targets: lookups.map(() => null), deleted: true, keys: found };
  }
  const targets = lookups.map((lookup) => {
    const found = lookup.by === "id"
      ? state.artifacts.find((a) => a.id === lookup.artifactId)
      : lookup.identityKey === null
      ? undefined
      : state.artifacts.find((a) => a.artifactType === lookup.artifactType && a.identityKey === lookup.identityKey);
    return found ?? null;
  });
  return { seq: state.seq, artifactCount: state.artifacts.length, targets, keys: found };
}
