import type { JsonValue } from "./json.ts";

/**
 * RFC 7396 JSON Merge Patch: `patch` applied to `target`. An object patch merges member
 * by member (`null` removes a member, anything else replaces or recurses); any other
 * patch replaces the target whole. Pure: neither argument is modified. It recurses as
 * deep as the patch nests (at most MAX_JSON_DEPTH, checked before), and keys such as
 * `__proto__` stay plain data (defined as own properties, never assigned).
 */
export function mergePatch(target: JsonValue, patch: JsonValue): JsonValue {
  if (!isObject(patch)) return patch;
  const result: Record<string, JsonValue> = isObject(target) ? copy(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete result[key];
    } else {
      define(result, key, mergePatch(Object.hasOwn(result, key) ? (result[key] as JsonValue) : null, value));
    }
  }
  return result;
}

function isObject(value: JsonValue): value is { [key: string]: JsonValue } {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** A shallow copy whose keys are all own data properties (`__proto__` included). */
function copy(object: { [key: string]: JsonValue }): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const [key, value] of Object.entries(object)) define(out, key, value);
  return out;
}

function define(object: Record<string, JsonValue>, key: string, value: JsonValue): void {
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
}
