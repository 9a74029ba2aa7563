/**
 * `npm start` runs the server's TypeScript on Node's own type stripping, which refuses
 * TypeScript that emits code (enums, namespaces, parameter properties): every module of
 * src/ and functions/ must be erasable, not only those the server tests happen to load
 * (the OTLP exporter, for one, is loaded only when configured). docs/decisions.md, "Toolchain".
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { stripTypeScriptTypes } from "node:module";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..");

function modules(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: "utf8" })
    .filter((name) => name.endsWith(".ts"))
    .map((name) => join(dir, name));
}

describe("the server's modules under Node's type stripping", () => {
  const files = [...modules("src"), ...modules("functions")];

  it("finds the modules", () => {
    expect(files).toContain(join("src", "runtime", "node.ts"));
    expect(files.length).toBeGreaterThan(100);
  });

  it("are all erasable TypeScript", () => {
    const refused: string[] = [];
    for (const file of files) {
      try {
        stripTypeScriptTypes(readFileSync(join(ROOT, file), "utf8"));
      } catch (error) {
        refused.push(`${file}: ${(error as Error).message}`);
      }
    }
    expect(refused).toEqual([]);
  });

  it("refuses what is not (the check can fail)", () => {
    expect(() => stripTypeScriptTypes("enum Op { Create }")).toThrow(/enum/);
    expect(() => stripTypeScriptTypes("class A { constructor(private x: number) {} }")).toThrow();
  });
});
