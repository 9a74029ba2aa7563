import { describe, expect, it } from "vitest";
import { KnownHeads } from "../../src/service/known-heads.ts";

describe("KnownHeads", () => {
  it("keeps the most recently remembered heads, up to its bound", () => {
    const heads = new KnownHeads({ max: 2, sharedForMs: 1000, now: () => 0 });
    heads.remember("t", "a", { seq: 1, artifactCount: 1 });
    heads.remember("t", "b", { seq: 2, artifactCount: 2 });
    heads.remember("t", "a", { seq: 3, artifactCount: 3 });
    heads.remember("t", "c", { seq: 4, artifactCount: 4 });
    expect(heads.get("t", "b")).toBeUndefined();
    expect(heads.get("t", "a")).toEqual({ seq: 3, artifactCount: 3 });
    expect(heads.get("t", "c")).toEqual({ seq: 4, artifactCount: 4 });
    expect(heads.get("other", "a")).toBeUndefined();
  });

  it("a thread found shared is not remembered until the time is up; forget only drops the head", () => {
    let now = 0;
    const heads = new KnownHeads({ max: 10, sharedForMs: 1000, now: () => now });
    heads.remember("t", "a", { seq: 1, artifactCount: 1 });
    heads.shared("t", "a");
    expect(heads.get("t", "a")).toBeUndefined();
    now = 999;
    heads.remember("t", "a", { seq: 5, artifactCount: 5 });
    expect(heads.get("t", "a")).toBeUndefined();
    now = 1000;
    heads.remember("t", "a", { seq: 6, artifactCount: 6 });
    expect(heads.get("t", "a")).toEqual({ seq: 6, artifactCount: 6 });
    heads.forget("t", "a");
    expect(heads.get("t", "a")).toBeUndefined();
    heads.remember("t", "a", { seq: 7, artifactCount: 7 });
    expect(heads.get("t", "a")).toEqual({ seq: 7, artifactCount: 7 });
  });
});
