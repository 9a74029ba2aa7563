/**
 * What every Worker harness starts workerd with (Miniflare 5): the compatibility date the
 * deploy uses and the options shared by the whole runtime.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { MiniflareOptions } from "miniflare";

const WRANGLER_TOML = fileURLToPath(new URL("../../wrangler.toml", import.meta.url));

let date: string | undefined;

/** wrangler.toml's `compatibility_date`: tests run the Worker on the date a deploy gets. */
export function compatibilityDate(): string {
  if (date !== undefined) return date;
  const found = /^compatibility_date\s*=\s*"(\d{4}-\d{2}-\d{2})"/m.exec(readFileSync(WRANGLER_TOML, "utf8"))?.[1];
  if (found === undefined) throw new Error(`no compatibility_date in ${WRANGLER_TOML}`);
  return (date = found);
}

/** One Worker's options, as Miniflare 5 takes them (`workers: [...]`). */
export type WorkerdOptions = MiniflareOptions["workers"][number];
/** A Worker's bindings by name (`{type: "r2" | "text" | "durable-object" | ..., ...}`). */
export type WorkerdEnv = NonNullable<WorkerdOptions["config"]["env"]>;

/**
 * The runtime-wide options: a loopback address, and no dev registry. Miniflare 5 turns the
 * registry on by default, through which Workers started by other processes (concurrent test
 * files, a `wrangler dev`) would discover and bind to each other.
 */
export function sharedOptions(port = 0): Omit<MiniflareOptions, "workers"> {
  return { host: "127.0.0.1", port, enableDevRegistry: false };
}
