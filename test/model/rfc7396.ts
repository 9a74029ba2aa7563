/** RFC 7396 appendix A, "Example Test Cases", row by row: original, patch, result. */
export const RFC7396_EXAMPLES: ReadonlyArray<{ original: unknown; patch: unknown; result: unknown }> = [
  { original: { a: "b" }, patch: { a: "c" }, result: { a: "c" } },
  { original: { a: "b" }, patch: { b: "c" }, result: { a: "b", b: "c" } },
  { original: { a: "b" }, patch: { a: null }, result: {} },
  { original: { a: "b", b: "c" }, patch: { a: null }, result: { b: "c" } },
  { original: { a: ["b"] }, patch: { a: "c" }, result: { a: "c" } },
  { original: { a: "c" }, patch: { a: ["b"] }, result: { a: ["b"] } },
  { original: { a: { b: "c" } }, patch: { a: { b: "d", c: null } }, result: { a: { b: "d" } } },
  { original: { a: [{ b: "c" }] }, patch: { a: [1] }, result: { a: [1] } },
  { original: ["a", "b"], patch: ["c", "d"], result: ["c", "d"] },
  { original: { a: "b" }, patch: ["c"], result: ["c"] },
  { original: { a: "foo" }, patch: null, result: null },
  { original: { a: "foo" }, patch: "bar", result: "bar" },
  { original: { e: null }, patch: { a: 1 }, result: { e: null, a: 1 } },
  { original: [1, 2], patch: { a: "b", c: null }, result: { a: "b" } },
  { original: {}, patch: { a: { bb: { ccc: null } } }, result: { a: { bb: {} } } },
];
