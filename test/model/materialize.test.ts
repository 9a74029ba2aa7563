import { describe, expect, it } from "vitest";
import type { Artifact } from "../../src/model/artifact.ts";
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
});
