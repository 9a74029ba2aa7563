import { describe, expect, it } from "vitest";
import { decideGroup, type WriteCommand } from "../../src/model/decide.ts";
import { findKey, KEY_RETENTION_MS, MAX_KEYS_PER_THREAD, recordKeys } from "../../src/model/idempotency.ts";

const at = (ms: number) => new Date(Date.UTC(2026, 0, 1) + ms).toISOString();
const mark = (key: string, fingerprint = "fp") => ({ key, fingerprint });

describe("recordKeys", () => {
  it("records keyed patches, oldest first, and returns the same array when nothing changed", () => {
    const one = recordKeys([], [{ seq: 1, at: at(0), op: "add", idempotency: mark("a") }]);
    expect(one).toEqual([{ key: "a", fingerprint: "fp", seq: 1, at: at(0) }]);
    const same = recordKeys(one, [{ seq: 2, at: at(1), op: "add" }]);
    expect(same).toBe(one);
    const two = recordKeys(one, [{ seq: 3, at: at(2), op: "update", idempotency: mark("b") }]);
    expect(two.map((r) => r.key)).toEqual(["a", "b"]);
    expect(findKey(two, "b")?.seq).toBe(3);
    expect(findKey(two, "c")).toBeNull();
  });

  it("keeps a key exactly KEY_RETENTION_MS after its patch, drops it 1 ms later", () => {
    const records = recordKeys([], [{ seq: 1, at: at(0), op: "add", idempotency: mark("old") }]);
    const kept = recordKeys(records, [{ seq: 2, at: at(KEY_RETENTION_MS), op: "add", idempotency: mark("new") }]);
    expect(kept.map((r) => r.key)).toEqual(["old", "new"]);
    const dropped = recordKeys(records, [{
      seq: 2,
      at: at(KEY_RETENTION_MS + 1),
      op: "add",
      idempotency: mark("new"),
    }]);
    expect(dropped.map((r) => r.key)).toEqual(["new"]);
  });

  it("keeps the newest MAX_KEYS_PER_THREAD keys", () => {
    const patches = Array.from({ length: MAX_KEYS_PER_THREAD + 1 }, (_, i) => ({
      seq: i + 1,
      at: at(i),
      op: "add",
      idempotency: mark(`k${i}`),
    }));
    const records = recordKeys([], patches);
    expect(records).toHaveLength(MAX_KEYS_PER_THREAD);
    expect(records[0]?.key).toBe("k1");
    expect(recordKeys([], patches.slice(0, MAX_KEYS_PER_THREAD))).toHaveLength(MAX_KEYS_PER_THREAD);
  });

  it("a delete ends the life's keys and keeps its own", () => {
    const records = recordKeys([], [{ seq: 1, at: at(0), op: "add", idempotency: mark("a") }]);
    expect(recordKeys(records, [{ seq: 2, at: at(1), op: "delete", idempotency: mark("d") }]).map((r) => r.key))
      .toEqual(["d"]);
    expect(recordKeys(records, [{ seq: 2, at: at(1), op: "delete" }])).toEqual([]);
  });
});

describe("decideGroup with Idempotency-Keys", () => {
  const options = {
    threadId: "t",
    at: at(0),
    newId: (() => {
      let n = 0;
      return () => `id-${++n}`;
    })(),
    maxArtifactsPerThread: 100,
    maxPayloadBytes: 1000,
  };
  const create = (key: string, fingerprint: string): WriteCommand => ({
    kind: "create",
    artifactType: "note",
    identityKey: null,
    payload: {},
    idempotency: mark(key, fingerprint),
  });

  it("in one group: the first keyed write appends (carrying its key), a repeat replays it, another request is 422", () => {
    const outcomes = decideGroup([create("k", "f1"), create("k", "f1"), create("k", "f2")], {
      seq: 0,
      artifactCount: 0,
      targets: [null, null, null],
    }, options);
    expect(outcomes[0]).toMatchObject({
      kind: "append",
      patch: { seq: 1, idempotency: { key: "k", fingerprint: "f1" } },
    });
    expect(outcomes[1]).toEqual({ kind: "replay", seq: 1 });
    expect(outcomes[2]).toMatchObject({ kind: "refused", problem: { code: "idempotency_key_reused" } });
  });

  it("from the context: a recorded key replays or refuses, and a delete earlier in the group ends it", () => {
    const context = {
      seq: 4,
      artifactCount: 1,
      targets: [null, null],
      keys: [{ key: "k", fingerprint: "f1", seq: 3, at: at(0) }, { key: "k", fingerprint: "f1", seq: 3, at: at(0) }],
    };
    expect(decideGroup([create("k", "f1")], { ...context, targets: [null], keys: [context.keys[0]!] }, options))
      .toEqual([{ kind: "replay", seq: 3 }]);
    const afterDelete = decideGroup(
      [{ kind: "deleteThread", precondition: { kind: "any" } }, create("k", "f1")],
      { ...context, keys: [null, context.keys[1]!] },
      options,
    );
    expect(afterDelete.map((o) => o.kind)).toEqual(["deleted", "append"]);
  });

  it("a refused keyed write records nothing: its repeat in the group is decided again", () => {
    const update: WriteCommand = {
      kind: "update",
      artifactId: "missing",
      payload: {},
      precondition: { kind: "any" },
      idempotency: mark("u", "f"),
    };
    const outcomes = decideGroup([update, update], { seq: 1, artifactCount: 0, targets: [null, null] }, options);
    expect(outcomes.map((o) => o.kind)).toEqual(["refused", "refused"]);
    expect(outcomes[1]).toMatchObject({ problem: { code: "artifact_not_found" } });
  });
});
