import { describe, expect, it } from "vitest";
import type { JsonValue } from "../../src/model/json.ts";
import { mergePatch } from "../../src/model/merge-patch.ts";
import { RFC7396_EXAMPLES } from "./rfc7396.ts";

describe("mergePatch (RFC 7396)", () => {
  it.each(RFC7396_EXAMPLES.map((e) => [JSON.stringify(e.original), JSON.stringify(e.patch), e] as const))(
    "%s merged with %s",
    (_original, _patch, example) => {
      const original = structuredClone(example.original) as JsonValue;
      const patch = structuredClone(example.patch) as JsonValue;
      expect(mergePatch(original, patch)).toEqual(example.result);
      // Pure: neither argument was touched.
      expect(original).toEqual(example.original);
      expect(patch).toEqual(example.patch);
    },
  );

  it("keeps __proto__ and constructor keys as plain data, never touching a prototype", () => {
    const patch = JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}') as JsonValue;
    const merged = mergePatch({ a: 1 }, patch) as Record<string, unknown>;
    expect(Object.hasOwn(merged, "__proto__")).toBe(true);
    expect(Object.getPrototypeOf(merged)).toBe(Object.prototype);
    expect(JSON.stringify(merged)).toBe('{"a":1,"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("merges into a nested __proto__ member that exists as data", () => {
    const original = JSON.parse('{"__proto__":{"a":1}}') as JsonValue;
    const merged = mergePatch(original, JSON.parse('{"__proto__":{"b":2}}') as JsonValue);
    expect(JSON.stringify(merged)).toBe('{"__proto__":{"a":1,"b":2}}');
  });
});
