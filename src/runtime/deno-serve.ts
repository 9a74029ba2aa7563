/**
 * `deno task serve`: functions/app.ts on $PORT (default 8787) and $HOST (default
 * 127.0.0.1), with the same environment contract as the Node server. The port is read
 * here because `deno task`'s shell has no `${VAR:-default}`.
 */
import { LIFECYCLE, logger } from "../logging/logger.ts";
import { ConfigError, loadConfig } from "./config.ts";
import { configureDenoLogging, deliverWebhooksInThisProcess } from "./deno.ts";
import { edgeEntry } from "./edge.ts";

// A long-lived process: it delivers webhooks (a Deploy function does not).
deliverWebhooksInThisProcess();
const app = edgeEntry();

interface DenoServe {
  env: {
    get(name: string): string | undefined;
    set(name: string, value: string): void;
    toObject(): Record<string, string>;
  };
  serve(
    options: { port: number; hostname: string; onListen?: (addr: { port: number; hostname: string }) => void },
    handler: (request: Request) => Response | Promise<Response>,
  ): { finished: Promise<void>; shutdown(): Promise<void> };
  addSignalListener(signal: "SIGTERM" | "SIGINT", handler: () => void): void;
  exit(code: number): never;
}

const deno = (globalThis as unknown as { Deno: DenoServe }).Deno;
const port = Number(deno.env.get("PORT") || "8787");
const hostname = deno.env.get("HOST") || "127.0.0.1";
// The functions read HOST to decide whether they may run without authentication.
deno.env.set("HOST", hostname);
// Logging from the start (the listening line); a bad variable is reported by the first request.
try {
  configureDenoLogging(loadConfig(deno.env.toObject()));
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  configureDenoLogging({ logLevel: "info", logFormat: undefined });
}
const server = deno.serve({
  port,
  hostname,
  // test/support/server-process.ts waits for this line: keep "listening on http://…".
  onListen: (addr) =>
    logger(LIFECYCLE).info("thread-artifacts (deno) listening on {url}", { url: `http://${hostname}:${addr.port}` }),
}, (request) => app.fetch(request));
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  deno.addSignalListener(signal, () => {
    setTimeout(() => deno.exit(0), 5000);
    void server.shutdown().then(() => deno.exit(0));
  });
}
