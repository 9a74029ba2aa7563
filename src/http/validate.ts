import type { Context } from "hono";
import * as v from "valibot";
import { ArtifactIdSchema, ThreadIdSchema } from "../model/schemas.ts";
import { invalid } from "./problem.ts";

/** Parses `input` with `schema` or throws a 400 naming the first problem and where it is. */
export function parseOr400<const S extends v.GenericSchema>(schema: S, input: unknown, what: string): v.InferOutput<S> {
  const result = v.safeParse(schema, input, { abortEarly: true });
  if (result.success) return result.output;
  const issue = result.issues[0];
  const path = issue.path?.map((item) => String(item.key)).join(".");
  throw invalid(`${what}${path ? ` ${path}` : ""}: ${issue.message}`);
}

/** The path's threadId, validated. */
export function threadIdOf(c: Context): string {
  return parseOr400(ThreadIdSchema, c.req.param("threadId"), "path threadId");
}

/** The path's artifact id, validated and lowercased (ids match case-insensitively). */
export function artifactIdOf(c: Context): string {
  return parseOr400(ArtifactIdSchema, c.req.param("artifactId"), "path artifactId").toLowerCase();
}
