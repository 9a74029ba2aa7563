/**
 * decideGroup is the write policy for a queue of writes decided on one context: it
 * must answer exactly what deciding them one at a time would, each on the thread as
 * the previous ones left it (the oracle below materializes after every patch).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Artifact, ThreadState } from "../../src/model/artifact.ts";
import {
  decideGroup,
  decideWrite,
  type GroupOutcome,
  type TargetLookup,
  targetOf,
  type WriteCommand,
} from "../../src/model/decide.ts";
import { ProblemError } from "../../src/model/errors.ts";
import type { JsonValue } from "../../src/model/json.ts";
import { materialize } from "../../src/model/materialize.ts";

const THREAD = "t";
const AT = "2026-11-25T00:00:00.000Z";
const MAX_ARTIFACTS = 4;

/** Ids come from a counter, so both runs name new artifacts alike and commands can name them in advance. */
function counter(start: number): () => string {
  let n = start;
  return () => `id-${++n}`;
}

const payload = fc.constantFrom<JsonValue>(1, 2, { a: 1 }, [1]);
const id = fc.integer({ min: 1, max: 10 }).map((n) => `id-${n}`);
const precondition = fc.oneof(
  fc.constant({ kind: "any" as const }),
  fc.constant({ kind: "exists" as const }),
  fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 2 }).map((versions) => ({
    kind: "versions" as const,
    versions,
  })),
);
const command: fc.Arbitrary<WriteCommand> = fc.oneof(
  fc.record({
    kind: fc.constant("create" as const),
    artifactType: fc.constantFrom("plan", "note"),
    identityKey: fc.option(fc.constantFrom("a", "b"), { nil: null }),
    payload,
  }),
  fc.record({ kind: fc.constant("update" as const), artifactId: id, payload, precondition }),
  fc.record({ kind: fc.constant("remove" as const), artifactId: id, precondition }),
);

function lookup(state: ThreadState | null, target: TargetLookup): Artifact | null {
  if (!state) return null;
  if (target.by === "id") return state.artifacts.find((a) => a.id === target.artifactId) ?? null;
  if (target.identityKey === null) return null;
  return state.artifacts.find((a) => a.artifactType === target.artifactType && a.identityKey === target.identityKey) ??
    null;
}

/** The oracle: one decideWrite at a time, materializing each patch before the next. */
function oneByOne(
  commands: readonly WriteCommand[],
  base: ThreadState | null,
  newId: () => string,
): { outcomes: GroupOutcome[]; state: ThreadState | null } {
  let state = base;
  const outcomes = commands.map((c): GroupOutcome => {
    const seq = state?.seq ?? 0;
    try {
      if (c.kind !== "create" && seq === 0) throw new ProblemError("thread_not_found", "no thread");
      const decision = decideWrite(c, {
        seq,
        artifactCount: state?.artifacts.length ?? 0,
        target: lookup(state, targetOf(c)),
      }, { threadId: THREAD, at: AT, newId, maxArtifactsPerThread: MAX_ARTIFACTS, maxPayloadBytes: 65536 });
      if (decision.kind === "existing") return { kind: "existing", artifact: decision.artifact, seq };
      const patch = {
        seq: seq + 1,
        threadId: THREAD,
        at: AT,
        op: decision.op,
        artifact: decision.artifact,
      };
      state = materialize(state, [patch]);
      return { kind: "append", patch };
    } catch (error) {
      if (error instanceof ProblemError) return { kind: "refused", problem: error };
      throw error;
    }
  });
  return { outcomes, state };
}

const comparable = (outcomes: GroupOutcome[]) =>
  outcomes.map((o) => (o.kind === "refused" ? { kind: o.kind, code: o.problem.code } : o));

describe("decideGroup", () => {
  it("answers a group exactly as deciding its writes one at a time would", () => {
    fc.assert(
      fc.property(
        fc.array(command, { maxLength: 8 }),
        fc.array(command, { minLength: 1, maxLength: 12 }),
        (history, group) => {
          const base = oneByOne(history, null, counter(0)).state;
          const used = base ? Math.max(0, ...base.artifacts.map((a) => Number(a.id.slice(3)))) : 0;
          // Both runs start their ids at the same point past every id the history made.
          const start = used + history.length;
          const expected = oneByOne(group, base, counter(start)).outcomes;
          const context = {
            seq: base?.seq ?? 0,
            artifactCount: base?.artifacts.length ?? 0,
            targets: group.map((c) => lookup(base, targetOf(c))),
          };
          const actual = decideGroup(group, context, {
            threadId: THREAD,
            at: AT,
            newId: counter(start),
            maxArtifactsPerThread: MAX_ARTIFACTS,
            maxPayloadBytes: 65536,
          });
          expect(comparable(actual)).toEqual(comparable(expected));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("sees its own writes: a create then an update and a remove of it, and an identity re-created after removal", () => {
    const newId = counter(0);
    const outcomes = decideGroup(
      [
        { kind: "create", artifactType: "plan", identityKey: "k", payload: 1 },
        { kind: "update", artifactId: "id-1", payload: 2, precondition: { kind: "versions", versions: [1] } },
        { kind: "create", artifactType: "plan", identityKey: "k", payload: 2 },
        { kind: "remove", artifactId: "id-1", precondition: { kind: "any" } },
        { kind: "create", artifactType: "plan", identityKey: "k", payload: 3 },
        { kind: "update", artifactId: "id-1", payload: 4, precondition: { kind: "any" } },
      ],
      { seq: 0, artifactCount: 0, targets: [null, null, null, null, null, null] },
      { threadId: THREAD, at: AT, newId, maxArtifactsPerThread: MAX_ARTIFACTS, maxPayloadBytes: 65536 },
    );
    expect(
      outcomes.map((
        o,
      ) => (o.kind === "append"
        ? `${o.patch.seq}:${o.patch.op}:${o.patch.artifact.id}:v${o.patch.artifact.version}`
        : o.kind === "existing"
        ? `existing@${o.seq}`
        : o.kind === "fork"
        ? `fork:${o.patches.length}`
        : o.kind === "deleted"
        ? `deleted@${o.patch.seq}`
        : o.kind === "replay"
        ? `replay@${o.seq}`
        : o.problem.code)
      ),
    ).toEqual([
      "1:add:id-1:v1",
      "2:update:id-1:v2",
      "existing@2",
      "3:remove:id-1:v2",
      "4:add:id-2:v1",
      "artifact_not_found",
    ]);
  });
});
