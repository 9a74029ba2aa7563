import type { EdgeFunction } from "../http/app.ts";
import { BroadcastChannelNotifier, InProcessNotifier } from "../live/notifier.ts";
import { assertAuthPolicy, loadConfig } from "./config.ts";
import { blobStoreFor, libsqlConnector } from "./server-stores.ts";
import { wire } from "./wire.ts";

interface DenoLike {
  env: { toObject(): Record<string, string> };
  addSignalListener?(signal: "SIGTERM" | "SIGINT", handler: () => void): void;
  unrefTimer?(id: number): void;
}

const deno = (globalThis as unknown as { Deno: DenoLike }).Deno;

/**
 * Deno wiring: one service per isolate (Deno has no per-request I/O rule), config from
 * Deno.env with the same contract and defaults as Node, hints over BroadcastChannel
 * (delivered between isolates of a Deno Deploy deployment).
 */
export function createDenoFetch(only?: EdgeFunction): (request: Request) => Promise<Response> {
  const env = deno.env.toObject();
  const config = loadConfig(env);
  // Deno cannot tell a function where it listens: without auth, HOST must say loopback.
  assertAuthPolicy(config, env.HOST?.trim() || undefined);
  const { app, feeds } = wire({
    config,
    blobStore: blobStoreFor(config, env),
    connectLibsql: libsqlConnector(config),
    notifier: typeof BroadcastChannel === "function" ? new BroadcastChannelNotifier() : new InProcessNotifier(),
    unref: (timer) => deno.unrefTimer?.(timer as unknown as number),
    ...(only ? { only } : {}),
  });
  // On shutdown, end open event streams so the server's graceful close need not wait out
  // their lifetime (Deno Deploy has no signals: there the platform ends them).
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    try {
      deno.addSignalListener?.(signal, () => feeds.drain());
    } catch {
      // Signals not supported here.
    }
  }
  return async (request) => app.fetch(request);
}
