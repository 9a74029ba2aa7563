import type { VersionPrecondition } from "../model/decide.ts";
import { invalid } from "./problem.ts";

/**
 * `If-Match: "3"` (a list of them, or `*`) as a version precondition. `If-Match` uses
 * strong comparison (RFC 9110 §13.1.1), so a weak tag `W/"3"` is well-formed but
 * never matches: the write gets 412.
 */
export function parseIfMatch(header: string | undefined): VersionPrecondition {
  if (header === undefined) return { kind: "any" };
  const trimmed = header.trim();
  if (trimmed === "*") return { kind: "exists" };
  const versions: number[] = [];
  for (const part of trimmed.split(",")) {
    const match = /^(W\/)?"([1-9][0-9]{0,14})"$/.exec(part.trim());
    if (!match) throw invalid('If-Match must be "<version>", a list of them, or *');
    if (!match[1]) versions.push(Number(match[2]));
  }
  return { kind: "versions", versions };
}

/** Whether `If-None-Match` names the current entity tag (weak comparison, RFC 9110 §13.1.2). */
export function matchesIfNoneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === "*") return true;
  return header.split(",").some((part) => part.trim().replace(/^W\//, "") === etag);
}
