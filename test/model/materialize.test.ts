import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Artifact, ThreadState } from "../../src/model/artifact.ts";
import { materialize, PatchGapError } from "../../src/model/materialize.ts";
import type { Patch } from "../../src/model/patch.ts";

function artifact(id: string, seq: number, version = 1, payload: unknown = { id }): Artifact {
  return {
    id,
    threadId: "t",
    artifactType: "note",
    identityKey: null,
    payload: payload as Artifact["payload"],
    version,
    createdAt: "2026-01-01T00:00:00.000Z",
    updatedAt: `2026-01-01T00:00:0${seq}.000Z`,
    seq,
  };
}

function patch(seq: number, op: Patch["op"], a: Artifact): Patch {
  return { seq, threadId: "t", at: `2026-01-01T00:00:0${seq}.000Z`, op, artifact: a };
}

describe("materialize", () => {
  it("returns null for no base and no patches", () => {
    expect(materialize(null, [])).toBeNull();
  });

  it("keeps creation order through updates and drops removed artifacts", () => {
    const state = materialize(null, [
      patch(1, "add", artifact("a", 1)),
      patch(2, "add", artifact("b", 2)),
      patch(3, "update", artifact("a", 3, 2, { changed: true })),
      patch(4, "add", artifact("c", 4)),
      patch(5, "remove", artifact("b", 2)),
    ]);
    expect(state?.seq).toBe(5);
    expect(state?.artifacts.map((a) => [a.id, a.version])).toEqual([
      ["a", 2],
      ["c", 1],
    ]);
    expect(state?.createdAt).toBe("2026-01-01T00:00:01.000Z");
    expect(state?.updatedAt).toBe("2026-01-01T00:00:05.000Z");
  });

  it("continues a base without modifying it", () => {
    const base = materialize(null, [patch(1, "add", artifact("a", 1))]);
    const frozen = structuredClone(base);
    const next = materialize(base, [patch(2, "remove", artifact("a", 1))]);
    expect(base).toEqual(frozen);
    expect(next?.artifacts).toEqual([]);
    expect(next?.seq).toBe(2);
  });

  it("refuses a gap or a repeated seq", () => {
    expect(() => materialize(null, [patch(2, "add", artifact("a", 2))])).toThrow(PatchGapError);
    const base = materialize(null, [patch(1, "add", artifact("a", 1))]);
    expect(() => materialize(base, [patch(1, "add", artifact("b", 1))])).toThrow(PatchGapError);
  });

  it("continues a state by adds and updates as a replay from nothing does, on every branch of one base", () => {
    // States continued from one another share an index of positions (materialize.ts):
    // here groups of adds and updates (ids from a small pool, so an add may repeat an id
    // and two branches may add one id at different positions) are applied to states picked
    // from everything made so far, with a remove now and then (the full path), and each
    // result is compared with the replay of its whole history from nothing.
    const id = fc.constantFrom("a", "b", "c", "d", "e", "f", "g", "h");
    const op = fc.record({ op: fc.constantFrom("add", "add", "update", "remove"), id, payload: fc.integer() });
    fc.assert(
      fc.property(
        fc.array(fc.record({ from: fc.nat(), group: fc.array(op, { minLength: 1, maxLength: 4 }) }), { maxLength: 30 }),
        (steps) => {
          const start = [patch(1, "add", artifact("a", 1)), patch(2, "add", artifact("b", 2))];
          const made: { state: ThreadState; history: Patch[] }[] = [
            { state: materialize(null, start) as ThreadState, history: start },
          ];
          for (const step of steps) {
            const { state, history } = made[step.from % made.length] as (typeof made)[number];
            const group: Patch[] = [];
            let present = new Set(state.artifacts.map((a) => a.id));
            for (const { op, id, payload } of step.group) {
              const seq = state.seq + group.length + 1;
              // An update or a remove names an artifact the state has; an add any id.
              const kind = op !== "add" && !present.has(id) ? "add" : op;
              group.push(patch(seq, kind as Patch["op"], artifact(id, seq, 1, { payload })));
              present = new Set(present);
              if (kind === "remove") present.delete(id);
              else present.add(id);
            }
            const next = materialize(state, group) as ThreadState;
            const replayed = materialize(null, [...history, ...group]);
            expect(next).toEqual(replayed);
            made.push({ state: next, history: [...history, ...group] });
          }
          // Every earlier state still reads as it was made.
          for (const { state, history } of made) expect(state).toEqual(materialize(null, history));
        },
      ),
      // PROPERTY_SEED / PROPERTY_RUNS: a longer run with a chosen seed.
      {
        numRuns: Number(process.env.PROPERTY_RUNS ?? 200),
        ...(process.env.PROPERTY_SEED ? { seed: Number(process.env.PROPERTY_SEED) } : {}),
      },
    );
  });
});
