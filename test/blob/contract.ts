/**
 * The BlobStore contract: one suite every adapter (memory, fs, and later r2, s3) must
 * pass, the way unstorage runs its shared `testDriver` suite against every driver.
 * Adapter-agnostic on purpose: it speaks only the port, never paths or SDKs.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type BlobStore, compareKeys, InvalidKeyError, type PutIfAbsentResult } from "../../src/blob/port.ts";

export interface MadeStore {
  store: BlobStore;
  cleanup?: () => Promise<void>;
}

/** Keys inserted in this (shuffled) order by the listing tests. */
const SHUFFLED_KEYS = [
  "t/threads/a/patches/000000000010.json",
  "u/other.json",
  "t/threads/a/patches/000000000002.json",
  "t/threads/b/patches/000000000001.json",
  "t0.json",
  "t/threads/a-b/patches/000000000001.json",
  "t/threads/a/snapshots/000000000002.json",
  "t/threads/a/patches/000000000100.json",
  "t.json",
  "t/threads/A/patches/000000000001.json",
  "t/threads/a/patches/000000000001.json",
  "t/threads/a.b/patches/000000000001.json",
];

/**
 * The same keys in ascending code-unit order, written out by hand (not computed):
 * "." (0x2E) < "/" (0x2F) < "0" (0x30), "-" (0x2D) < ".", "A" < "a". A store that
 * lists folder by folder (depth first) would put "t/threads/a/..." before
 * "t/threads/a-b/..." and fail.
 */
const SORTED_KEYS = [
  "t.json",
  "t/threads/A/patches/000000000001.json",
  "t/threads/a-b/patches/000000000001.json",
  "t/threads/a.b/patches/000000000001.json",
  "t/threads/a/patches/000000000001.json",
  "t/threads/a/patches/000000000002.json",
  "t/threads/a/patches/000000000010.json",
  "t/threads/a/patches/000000000100.json",
  "t/threads/a/snapshots/000000000002.json",
  "t/threads/b/patches/000000000001.json",
  "t0.json",
  "u/other.json",
];

const PATCHES_A = [
  "t/threads/a/patches/000000000001.json",
  "t/threads/a/patches/000000000002.json",
  "t/threads/a/patches/000000000010.json",
  "t/threads/a/patches/000000000100.json",
];

const INVALID_KEYS: Array<[label: string, key: string]> = [
  ["empty", ""],
  ["dot-dot", ".."],
  ["dot", "."],
  ["empty segment", "a//b"],
  ["leading dot segment", "./a"],
  ["inner dot segment", "a/./b"],
  ["inner dot-dot segment", "a/../b"],
  ["leading dot-dot segment", "../a"],
  ["trailing dot-dot segment", "a/.."],
  ["trailing dot segment", "a/."],
  ["leading slash", "/a"],
  ["trailing slash", "a/"],
  ["NUL", "a\u0000b"],
  ["newline", "a\nb"],
  ["DEL", "a\u007fb"],
  ["C1 control (NEL)", "a\u0085b"],
  ["backslash", "a\\b"],
  ["longer than 1024", "k".repeat(1025)],
];

const NON_ASCII_BODY = "héllo wörld — 日本語テキスト — 🚀👩‍👩‍👧 — e\u0301 — Ω≈ç√ — \u{10FFFF}";

/** About 1 MB of UTF-8 (more bytes than UTF-16 code units), with a unique tail. */
function megabyteBody(): string {
  const unit = '{"é":"漢字","🙂":[1,2,3],"n":"\\n"}\n';
  const repeats = Math.ceil((1024 * 1024) / new TextEncoder().encode(unit).length);
  return `${unit.repeat(repeats)}END`;
}

async function putAll(store: BlobStore, keys: string[]): Promise<void> {
  for (const key of keys) {
    expect(await store.putIfAbsent(key, `body of ${key}`)).toBe("created");
  }
}

export function describeBlobStoreContract(name: string, makeStore: () => Promise<MadeStore>): void {
  describe(`BlobStore contract: ${name}`, () => {
    let store: BlobStore;
    let cleanup: (() => Promise<void>) | undefined;

    beforeEach(async () => {
      const made = await makeStore();
      store = made.store;
      cleanup = made.cleanup;
    });

    afterEach(async () => {
      await cleanup?.();
      cleanup = undefined;
    });

    describe("get / exists", () => {
      it("get of a missing key is null and exists is false", async () => {
        expect(await store.get("t/threads/x/patches/000000000001.json")).toBeNull();
        expect(await store.exists("t/threads/x/patches/000000000001.json")).toBe(false);
        expect(await store.get("top-level.json")).toBeNull();
      });

      it("exists is true after a write and false for a sibling in the same folder", async () => {
        await store.put("t/threads/x/patches/000000000001.json", "{}");
        expect(await store.exists("t/threads/x/patches/000000000001.json")).toBe(true);
        expect(await store.exists("t/threads/x/patches/000000000002.json")).toBe(false);
        expect(await store.get("t/threads/x/patches/000000000002.json")).toBeNull();
      });

      it("delete removes one key: gone for get, exists and list, its siblings kept; a missing key is no error", async () => {
        await store.put("t/threads/d/commits/000000000001.json", "one");
        await store.putIfAbsent("t/threads/d/commits/000000000002.json", "two");
        await store.put("t/threads/d/compaction.json", "{}");
        await store.delete("t/threads/d/commits/000000000001.json");
        expect(await store.get("t/threads/d/commits/000000000001.json")).toBeNull();
        expect(await store.exists("t/threads/d/commits/000000000001.json")).toBe(false);
        expect(await store.list("t/threads/d/")).toEqual([
          "t/threads/d/commits/000000000002.json",
          "t/threads/d/compaction.json",
        ]);
        await store.delete("t/threads/d/commits/000000000001.json");
        await store.delete("t/threads/nothing/here.json");
        // The last key of a folder: the folder's listing is empty, and a put-if-absent there creates again.
        await store.delete("t/threads/d/commits/000000000002.json");
        expect(await store.list("t/threads/d/commits/")).toEqual([]);
        expect(await store.putIfAbsent("t/threads/d/commits/000000000002.json", "again")).toBe("created");
        expect(await store.get("t/threads/d/commits/000000000002.json")).toBe("again");
      });

      it("a folder-like prefix of stored keys is not itself an object", async () => {
        await store.put("t/threads/x/patches/000000000001.json", "{}");
        for (const folder of ["t", "t/threads", "t/threads/x", "t/threads/x/patches"]) {
          expect(await store.get(folder)).toBeNull();
          expect(await store.exists(folder)).toBe(false);
        }
        expect(await store.list("")).toEqual(["t/threads/x/patches/000000000001.json"]);
      });

      it("a key below an existing object is missing", async () => {
        await store.put("t/file.json", "{}");
        expect(await store.get("t/file.json/child")).toBeNull();
        expect(await store.exists("t/file.json/child")).toBe(false);
      });
    });

    describe("put / get roundtrip", () => {
      const bodies: Array<[label: string, body: string]> = [
        ["ASCII JSON", '{"v":1,"seq":1,"op":"add"}'],
        ["non-ASCII UTF-8", NON_ASCII_BODY],
        ["empty string", ""],
        ["line endings and control characters", "line1\nline2\r\nnul:\u0000 tab:\t bell:\u0007\n"],
      ];

      for (const [label, body] of bodies) {
        it(`put then get returns the body unchanged: ${label}`, async () => {
          await store.put("roundtrip/put.json", body);
          expect(await store.get("roundtrip/put.json")).toBe(body);
        });

        it(`putIfAbsent then get returns the body unchanged: ${label}`, async () => {
          expect(await store.putIfAbsent("roundtrip/pia.json", body)).toBe("created");
          expect(await store.get("roundtrip/pia.json")).toBe(body);
        });
      }

      it("a ~1 MB body roundtrips through put and putIfAbsent", async () => {
        const body = megabyteBody();
        expect(new TextEncoder().encode(body).length).toBeGreaterThanOrEqual(1024 * 1024);
        await store.put("big/put.json", body);
        expect(await store.putIfAbsent("big/pia.json", body)).toBe("created");
        const viaPut = await store.get("big/put.json");
        const viaPia = await store.get("big/pia.json");
        expect(viaPut?.length).toBe(body.length);
        expect(viaPut === body).toBe(true);
        expect(viaPia === body).toBe(true);
      });

      it("keys are case-sensitive and distinct objects", async () => {
        await store.put("case/Key.json", "upper");
        await store.put("case/key.json", "lower");
        expect(await store.get("case/Key.json")).toBe("upper");
        expect(await store.get("case/key.json")).toBe("lower");
        expect(await store.list("case/")).toEqual(["case/Key.json", "case/key.json"]);
      });
    });

    describe("atomic visibility", () => {
      /** Runs `write` while `readers` loops call get(key) until it settles; returns everything they saw. */
      async function readWhile(key: string, write: () => Promise<unknown>, readers = 4): Promise<Array<string | null>> {
        let writing = true;
        const loops = Array.from({ length: readers }, async () => {
          const seen: Array<string | null> = [];
          while (writing) seen.push(await store.get(key));
          return seen;
        });
        await write().finally(() => {
          writing = false;
        });
        return (await Promise.all(loops)).flat();
      }

      /** ~1.5 MB of UTF-8, large enough that a store writing in place would need several writes. */
      const largeBody = (tag: string) => `${tag}:${"é".repeat(750_000)}:${tag}`;

      it("readers see no object or the whole object while a large putIfAbsent lands, never a part", async () => {
        for (let round = 0; round < 4; round++) {
          const key = `atomic/pia/${round}.json`;
          const body = largeBody(`round ${round}`);
          const seen = await readWhile(key, async () => expect(await store.putIfAbsent(key, body)).toBe("created"));
          for (const read of seen) {
            expect(read === null || read === body, `a reader saw ${read?.length} of ${body.length} chars`).toBe(true);
          }
          expect(await store.get(key)).toBe(body);
        }
      });

      it("readers see the old or the new object while a large put overwrites, never a mix", async () => {
        const key = "atomic/put/snapshot.json";
        let previous = largeBody("initial");
        await store.put(key, previous);
        for (let round = 0; round < 4; round++) {
          const next = largeBody(`round ${round}`);
          const seen = await readWhile(key, () => store.put(key, next));
          for (const read of seen) {
            expect(read === previous || read === next, `a reader saw ${read?.length} chars, neither old nor new`).toBe(
              true,
            );
          }
          expect(await store.get(key)).toBe(next);
          previous = next;
        }
      });
    });

    describe("putIfAbsent", () => {
      it('returns "created" then "exists", and the second body does not replace the first', async () => {
        expect(await store.putIfAbsent("p/000000000001.json", "first")).toBe("created");
        expect(await store.putIfAbsent("p/000000000001.json", "second")).toBe("exists");
        expect(await store.get("p/000000000001.json")).toBe("first");
        expect(await store.list("p/")).toEqual(["p/000000000001.json"]);
      });

      it('an empty body is still an object: exists is true and a later putIfAbsent says "exists"', async () => {
        expect(await store.putIfAbsent("p/empty.json", "")).toBe("created");
        expect(await store.exists("p/empty.json")).toBe(true);
        expect(await store.putIfAbsent("p/empty.json", "not empty")).toBe("exists");
        expect(await store.get("p/empty.json")).toBe("");
      });

      it('after put, putIfAbsent says "exists" and leaves the put body', async () => {
        await store.put("p/snap.json", "from put");
        expect(await store.putIfAbsent("p/snap.json", "from putIfAbsent")).toBe("exists");
        expect(await store.get("p/snap.json")).toBe("from put");
      });

      it("many concurrent putIfAbsent of one key: exactly one created, and get returns that caller's body", async () => {
        const key = "race/patches/000000000001.json";
        const bodies = Array.from({ length: 50 }, (_, i) => `{"caller":${i},"pad":"${`${i}é`.repeat(2000)}"}`);
        // A reader polls while the writers race: it may see nothing or the winner's object, never a part of one.
        let writing = true;
        const reader = (async () => {
          const seen: Array<string | null> = [];
          while (writing) seen.push(await store.get(key));
          return seen;
        })();
        const results = await Promise.all(bodies.map((body) => store.putIfAbsent(key, body))).finally(() => {
          writing = false;
        });
        const created = results.flatMap((result, i) => (result === "created" ? [i] : []));
        expect(created).toHaveLength(1);
        expect(results.filter((result) => result === "exists")).toHaveLength(49);
        const winner = bodies[created[0] as number] as string;
        expect(await store.get(key)).toBe(winner);
        for (const read of await reader) {
          expect(
            read === null || read === winner,
            `a reader saw ${read?.length} chars, not the winner's ${winner.length}`,
          ).toBe(true);
        }
        expect(await store.list("race/")).toEqual([key]);
      });

      it("concurrent putIfAbsent of distinct keys in one new folder all succeed", async () => {
        const keys = Array.from(
          { length: 50 },
          (_, i) => `fresh/folder/patches/${String(i + 1).padStart(12, "0")}.json`,
        );
        const results = await Promise.all(keys.map((key) => store.putIfAbsent(key, `body ${key}`)));
        expect(results).toEqual(keys.map((): PutIfAbsentResult => "created"));
        expect(await store.list("fresh/")).toEqual(keys);
        for (const key of keys) expect(await store.get(key)).toBe(`body ${key}`);
      });
    });

    describe("a commit: one put-if-absent of a whole group", () => {
      /** A commit-sized body (64 patches of ~1.5 KiB, multi-byte text) tagged by its writer. */
      const commitBody = (tag: string) =>
        JSON.stringify({
          v: 2,
          writer: tag,
          patches: Array.from({ length: 64 }, (_, i) => ({ seq: i + 1, text: `${tag}-${"é✓".repeat(500)}` })),
        });

      it("creates the whole body in one object, read back byte for byte", async () => {
        const body = commitBody("mine");
        const key = "t/commits/000000000001.json";
        expect(await store.putIfAbsent(key, body)).toBe("created");
        expect(await store.get(key)).toBe(body);
        expect(await store.putIfAbsent(key, commitBody("again"))).toBe("exists");
        expect(await store.get(key)).toBe(body);
      });

      it("writers racing for one commit key: exactly one body lands, whole, and every other writer is told it exists", async () => {
        const key = "race-commit/commits/000000000007.json";
        const bodies = ["a", "b", "c", "d"].map(commitBody);
        const results = await Promise.all(bodies.map((body) => store.putIfAbsent(key, body)));
        expect(results.filter((r) => r === "created")).toHaveLength(1);
        expect(results.filter((r) => r === "exists")).toHaveLength(3);
        expect(await store.get(key)).toBe(bodies[results.indexOf("created")]);
        expect(await store.list("race-commit/")).toEqual([key]);
      });
    });

    describe("put", () => {
      it("overwrites an existing object", async () => {
        await store.put("s/snapshot.json", "one");
        await store.put("s/snapshot.json", "two");
        expect(await store.get("s/snapshot.json")).toBe("two");
        expect(await store.list("s/")).toEqual(["s/snapshot.json"]);
      });

      it("overwrites an object made by putIfAbsent", async () => {
        expect(await store.putIfAbsent("s/snapshot.json", "created")).toBe("created");
        await store.put("s/snapshot.json", "replaced");
        expect(await store.get("s/snapshot.json")).toBe("replaced");
      });

      it("a shorter body fully replaces a longer one (no leftover bytes)", async () => {
        await store.put("s/snapshot.json", "a much longer body than the next one ✓✓✓");
        await store.put("s/snapshot.json", "short");
        expect(await store.get("s/snapshot.json")).toBe("short");
        await store.put("s/snapshot.json", "");
        expect(await store.get("s/snapshot.json")).toBe("");
        expect(await store.exists("s/snapshot.json")).toBe(true);
      });

      it("concurrent puts of one key leave exactly one whole body", async () => {
        const bodies = Array.from({ length: 20 }, (_, i) => `writer ${i}: ${"ü".repeat(10_000)} end ${i}`);
        await Promise.all(bodies.map((body) => store.put("s/contended.json", body)));
        const stored = await store.get("s/contended.json");
        expect(bodies).toContain(stored);
        expect(await store.list("s/")).toEqual(["s/contended.json"]);
      });
    });

    describe("list", () => {
      beforeEach(async () => {
        await putAll(store, SHUFFLED_KEYS);
      });

      it("lists every key in ascending code-unit order, whatever the insertion order", async () => {
        expect(await store.list("")).toEqual(SORTED_KEYS);
      });

      it("lists only keys with the prefix, zero-padded seqs in numeric order", async () => {
        expect(await store.list("t/threads/a/patches/")).toEqual(PATCHES_A);
        expect(await store.list("t/threads/a/snapshots/")).toEqual(["t/threads/a/snapshots/000000000002.json"]);
        expect(await store.list("u/")).toEqual(["u/other.json"]);
      });

      it("a prefix without a trailing slash matches partial names across folders", async () => {
        expect(await store.list("t")).toEqual(SORTED_KEYS.slice(0, 11));
        expect(await store.list("t/threads/a")).toEqual([
          "t/threads/a-b/patches/000000000001.json",
          "t/threads/a.b/patches/000000000001.json",
          ...PATCHES_A,
          "t/threads/a/snapshots/000000000002.json",
        ]);
        expect(await store.list("t/threads/a/patches/00000000001")).toEqual(["t/threads/a/patches/000000000010.json"]);
      });

      it('a partial-name prefix ("a/b") matches "a/b/y", "a/b1/x" and "a/bc", not "a/a", "a/c" or "ab"', async () => {
        await putAll(store, ["a/bc", "a/c", "ab", "a/b1/x", "a/a", "a/b/y"]);
        expect(await store.list("a/b")).toEqual(["a/b/y", "a/b1/x", "a/bc"]);
        expect(await store.list("a/")).toEqual(["a/a", "a/b/y", "a/b1/x", "a/bc", "a/c"]);
        expect(await store.list("a")).toEqual(["a/a", "a/b/y", "a/b1/x", "a/bc", "a/c", "ab"]);
      });

      it("a prefix equal to a whole key lists that key", async () => {
        expect(await store.list("t.json")).toEqual(["t.json"]);
        expect(await store.list("t/threads/a/patches/000000000001.json")).toEqual([
          "t/threads/a/patches/000000000001.json",
        ]);
      });

      it("a prefix that matches nothing gives []", async () => {
        expect(await store.list("nothing/")).toEqual([]);
        expect(await store.list("nothing")).toEqual([]);
        expect(await store.list("t/threads/zzz/")).toEqual([]);
        expect(await store.list("t/threads/a/patches/9")).toEqual([]);
        expect(await store.list("t/threads/a/patches/000000000001.json/")).toEqual([]);
        expect(await store.list("T")).toEqual([]);
      });

      it("startAfter is exclusive", async () => {
        expect(await store.list("t/threads/a/patches/", { startAfter: "t/threads/a/patches/000000000002.json" }))
          .toEqual(PATCHES_A.slice(2));
        expect(await store.list("t/threads/a/patches/", { startAfter: "t/threads/a/patches/000000000100.json" }))
          .toEqual([]);
      });

      it("startAfter need not be a stored key, and one before the prefix changes nothing", async () => {
        expect(await store.list("t/threads/a/patches/", { startAfter: "t/threads/a/patches/000000000005.json" }))
          .toEqual(PATCHES_A.slice(2));
        expect(await store.list("t/threads/a/patches/", { startAfter: "a" })).toEqual(PATCHES_A);
        expect(await store.list("t/threads/a/patches/", { startAfter: "t/threads/a/patches/" })).toEqual(PATCHES_A);
        expect(await store.list("t/threads/a/patches/", { startAfter: "zzz" })).toEqual([]);
      });

      it("limit is honoured, taking the lowest keys", async () => {
        expect(await store.list("", { limit: 3 })).toEqual(SORTED_KEYS.slice(0, 3));
        expect(await store.list("t/threads/a/patches/", { limit: 1 })).toEqual(PATCHES_A.slice(0, 1));
        expect(await store.list("t/threads/a/patches/", { limit: 100 })).toEqual(PATCHES_A);
        expect(await store.list("", { startAfter: SORTED_KEYS[4], limit: 2 })).toEqual(SORTED_KEYS.slice(5, 7));
      });

      for (const pageSize of [1, 2, 5]) {
        it(`paging with startAfter = last key walks every key exactly once (page size ${pageSize})`, async () => {
          const walked: string[] = [];
          let startAfter: string | undefined;
          for (let page = 0; page <= SORTED_KEYS.length; page++) {
            const keys = await store.list(
              "",
              startAfter === undefined ? { limit: pageSize } : { startAfter, limit: pageSize },
            );
            expect(keys.length).toBeLessThanOrEqual(pageSize);
            if (keys.length === 0) break;
            walked.push(...keys);
            startAfter = keys[keys.length - 1];
          }
          expect(walked).toEqual(SORTED_KEYS);
        });
      }

      it("paging within a prefix stays within it", async () => {
        const walked: string[] = [];
        let startAfter = "";
        for (let page = 0; page <= PATCHES_A.length; page++) {
          const keys = await store.list("t/threads/a/", { startAfter, limit: 2 });
          if (keys.length === 0) break;
          walked.push(...keys);
          startAfter = keys[keys.length - 1] as string;
        }
        expect(walked).toEqual([...PATCHES_A, "t/threads/a/snapshots/000000000002.json"]);
      });

      it("an overwrite does not duplicate a key in the listing", async () => {
        await store.put("t/threads/a/patches/000000000002.json", "overwritten");
        expect(await store.list("t/threads/a/patches/")).toEqual(PATCHES_A);
      });
    });

    it("takes keys whose segments only look like dot segments, and characters just past the controls", async () => {
      const keys = ["a/..b", "a/.b", ".../x", "b../.c./d", "e\u00a0f", "g\u2028h", "\u0020i"];
      for (const key of keys) expect(await store.putIfAbsent(key, key)).toBe("created");
      for (const key of keys) expect(await store.get(key)).toBe(key);
      expect(await store.list("")).toEqual([...keys].sort(compareKeys));
    });

    describe("invalid keys", () => {
      for (const [label, key] of INVALID_KEYS) {
        it(`rejects a key with ${label} on every method and writes nothing`, async () => {
          await store.put("valid/seed.json", "seed");
          await expect(store.put(key, "x")).rejects.toBeInstanceOf(InvalidKeyError);
          await expect(store.putIfAbsent(key, "x")).rejects.toBeInstanceOf(InvalidKeyError);
          await expect(store.get(key)).rejects.toBeInstanceOf(InvalidKeyError);
          await expect(store.exists(key)).rejects.toBeInstanceOf(InvalidKeyError);
          expect(await store.list("")).toEqual(["valid/seed.json"]);
          expect(await store.get("valid/seed.json")).toBe("seed");
        });
      }
    });
  });
}
