import { describe, expect, it } from "vitest";
import type { Artifact } from "../../src/model/artifact.ts";
import { decideWrite, type WriteContext } from "../../src/model/decide.ts";
import { ProblemError } from "../../src/model/errors.ts";
import { utf8Bytes } from "../../src/model/json.ts";
import { uuidv7 } from "../../src/model/ids.ts";

const options = {
  threadId: "t",
  at: "2026-11-25T00:00:00.000Z",
  newId: () => "new-id",
  maxArtifactsPerThread: 2,
  maxPayloadBytes: 65536,
};
const existing: Artifact = {
  id: "a1",
  threadId: "t",
  artifactType: "plan",
  identityKey: "main",
  payload: { x: 1, y: [1, 2] },
  version: 3,
  createdAt: "2026-11-24T00:00:00.000Z",
  updatedAt: "2026-11-24T00:00:00.000Z",
  seq: 4,
};
const at = (seq: number, target: Artifact | null, artifactCount = 1): WriteContext => ({ seq, artifactCount, target });

function problemCode(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof ProblemError) return error.code;
    throw error;
  }
  throw new Error("expected a ProblemError");
}

describe("decideWrite", () => {
  it("creates at seq + 1 with version 1", () => {
    const decision = decideWrite(
      { kind: "create", artifactType: "plan", identityKey: null, payload: 1 },
      at(7, null),
      options,
    );
    expect(decision).toMatchObject({
      kind: "append",
      op: "add",
      artifact: { id: "new-id", seq: 8, version: 1, identityKey: null },
    });
  });

  it("treats an equal payload (any key order) as an idempotent retry and a different one as a conflict", () => {
    const same = decideWrite(
      { kind: "create", artifactType: "plan", identityKey: "main", payload: { y: [1, 2], x: 1 } },
      at(7, existing),
      options,
    );
    expect(same).toEqual({ kind: "existing", artifact: existing });
    const code = problemCode(() =>
      decideWrite(
        { kind: "create", artifactType: "plan", identityKey: "main", payload: { y: [2, 1], x: 1 } },
        at(7, existing),
        options,
      )
    );
    expect(code).toBe("identity_conflict");
  });

  it("refuses a create past the artifact bound but still answers an idempotent retry", () => {
    expect(
      problemCode(() =>
        decideWrite({ kind: "create", artifactType: "p", identityKey: null, payload: 1 }, at(2, null, 2), options)
      ),
    ).toBe(
      "thread_full",
    );
    const retry = decideWrite(
      { kind: "create", artifactType: "plan", identityKey: "main", payload: existing.payload },
      at(2, existing, 2),
      options,
    );
    expect(retry.kind).toBe("existing");
  });

  it("updates with If-Match and refuses a stale version", () => {
    const update = decideWrite(
      { kind: "update", artifactId: "a1", payload: 2, precondition: { kind: "versions", versions: [3] } },
      at(9, existing),
      options,
    );
    expect(update).toMatchObject({
      op: "update",
      artifact: { id: "a1", version: 4, seq: 10, payload: 2, createdAt: existing.createdAt },
    });
    expect(
      problemCode(() =>
        decideWrite(
          { kind: "update", artifactId: "a1", payload: 2, precondition: { kind: "versions", versions: [2] } },
          at(9, existing),
          options,
        )
      ),
    ).toBe("version_conflict");
  });

  it("removes carrying the last state, and 404s a missing artifact", () => {
    expect(decideWrite({ kind: "remove", artifactId: "a1", precondition: { kind: "any" } }, at(9, existing), options))
      .toEqual({
        kind: "append",
        op: "remove",
        artifact: existing,
      });
    expect(
      problemCode(() =>
        decideWrite({ kind: "remove", artifactId: "zz", precondition: { kind: "exists" } }, at(9, null), options)
      ),
    ).toBe(
      "artifact_not_found",
    );
  });
});

describe("ids and bytes", () => {
  it("makes UUIDv7s that sort by time and carry version 7", () => {
    const early = uuidv7(1_700_000_000_000);
    const late = uuidv7(1_800_000_000_000);
    expect(early).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(early < late).toBe(true);
  });

  it("makes distinct ids across refills of its random pool, each with the timestamp and version bits", () => {
    const at = 1_750_000_000_000;
    const ids = Array.from({ length: 1000 }, () => uuidv7(at));
    expect(new Set(ids).size).toBe(1000);
    for (const id of ids) {
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(Number.parseInt(id.replace(/-/g, "").slice(0, 12), 16)).toBe(at);
    }
  });

  it("counts UTF-8 bytes like TextEncoder", () => {
    for (const text of ["", "abc", "é", "€", "😀", "a😀b€", "\ud800x", "\udc00"]) {
      expect(utf8Bytes(text)).toBe(new TextEncoder().encode(text).length);
    }
  });
});
