// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
/**
 * The in-process app (createTestApp: real libSQL file, real fs rollout) served over real
 * loopback HTTP by @hono/node-server, so streams go through sockets exactly as in
 * production, while the test can still look at the process's own FeedHub and resources.
 */
import type { AddressInfo } from "node:net";
import { createServer } from "node:net";
import { serve } from "@hono/node-server";
import { createTestApp, type InProcessOptions } from "./in-process.ts";
import { readJsonResult } from "./http.ts";

export type LiveApp = ReturnType<typeof createTestApp> & {
  url: string;
  server: ReturnType<typeof serve>;
  /** JSON request over real HTTP; the body is always read. */
  http: (
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ) => Promise<{ status: number; headers: Headers; text: string; json: any }>;
  stop: () => Promise<void>;
};

export async function startLiveApp(options: InProcessOptions = {}): Promise<LiveApp> {
  const testApp = createTestApp(options);
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: testApp.app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  const http: LiveApp["http"] = async (method, path, body, headers = {}) => {
    const init: RequestInit = { method, headers: { ...headers } };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      (init.headers as Record<string, string>)["content-type"] = "application/json";
    }
    const response = await fetch(`${url}${path}`, init);
    return readJsonResult(response);
  };
  const stop = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    if ("closeAllConnections" in server) server.closeAllConnections();
    await closed;
    await testApp.close();
  };
  return Object.assign(testApp, { url, server, http, stop });
}

/** A loopback port that was bound and then closed (nothing listens there now). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
  return port;
}

let counter = 0;
/** A fresh thread id per test (threads are never shared between tests of one server). */
export function newThreadId(prefix = "live"): string {
  counter++;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}
