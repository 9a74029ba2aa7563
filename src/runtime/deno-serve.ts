/**
 * `deno task serve`: functions/app.ts on $PORT (default 8787) and $HOST (default
 * 127.0.0.1), with the same environment contract as the Node server. The port is read
 * here because `deno task`'s shell has no `${VAR:-default}`.
 */
import { edgeEntry } from "./edge.ts";

const app = edgeEntry();

interface DenoServe {
  env: { get(name: string): string | undefined; set(name: string, value: string): void };
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
const server = deno.serve({
  port,
  hostname,
  onListen: (addr) => console.log(`thread-artifacts (deno) listening on http://${hostname}:${addr.port}`),
}, (request) => app.fetch(request));
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  deno.addSignalListener(signal, () => {
    setTimeout(() => deno.exit(0), 5000);
    void server.shutdown().then(() => deno.exit(0));
  });
}
