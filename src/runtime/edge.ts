import type { EdgeFunction } from "../http/app.ts";
import { misconfiguredResponse } from "../http/problem.ts";
import { ConfigError } from "./config.ts";
import { type WorkerEnv, workerFetch } from "./workers.ts";

/** What both `deno serve` and Workers call: `export default { fetch }`. */
export interface EdgeEntry {
  fetch(request: Request, envOrInfo?: unknown, ctx?: unknown): Promise<Response>;
}

type DenoFetch = (request: Request) => Promise<Response>;

/**
 * The entry of every file in functions/: the same module runs under `deno serve`
 * (second argument: connection info; config from Deno.env) and on Workers (second
 * argument: the env bindings). Deno's wiring is loaded only on Deno, through a
 * specifier the Worker bundler does not follow, so the Worker bundle carries no
 * node:* code.
 */
export function edgeEntry(only?: EdgeFunction): EdgeEntry {
  let deno: Promise<DenoFetch> | undefined;
  return {
    fetch(request, envOrInfo, ctx) {
      if (isDeno()) {
        deno ??= loadDenoRuntime().then((runtime) => {
          try {
            return runtime.createDenoFetch(only);
          } catch (error) {
            if (!(error instanceof ConfigError)) throw error;
            // As on Workers: say why once, and answer every request with a problem, not a bare 500.
            runtime.logConfigError(error);
            return async (request: Request) => misconfiguredResponse(request);
          }
        });
        return deno.then((handle) => handle(request));
      }
      return workerFetch(
        request,
        (envOrInfo ?? {}) as WorkerEnv,
        ctx as { waitUntil(p: Promise<unknown>): void } | undefined,
        only,
      );
    },
  };
}

function isDeno(): boolean {
  return typeof (globalThis as { Deno?: { version?: { deno?: string } } }).Deno?.version?.deno === "string";
}

async function loadDenoRuntime(): Promise<typeof import("./deno.ts")> {
  const specifier = "./deno.ts";
  return (await import(/* @vite-ignore */ specifier)) as typeof import("./deno.ts");
}
