import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeHttpContract } from "../http/contract.ts";
import { type ServerProcess, startDenoFunction, startDenoServer } from "../support/server-process.ts";

// The real Deno binary from the `deno` npm package, running functions/app.ts behind
// Deno.serve exactly as `deno task serve` does, with the Node server's env contract.
describeHttpContract("Deno: deno task serve", async (env) => {
  const dir = mkdtempSync(join(tmpdir(), "artifacts-deno-contract-"));
  let server = await startDenoServer({ DATA_DIR: dir, ...env });
  return {
    fetch: (path, init) => fetch(`${server.url}${path}`, init),
    restart: async () => {
      await server.stop();
      server = await startDenoServer({ DATA_DIR: dir, ...env });
    },
    sibling: async () => {
      const other = await startDenoServer({ DATA_DIR: dir, ...env });
      return { fetch: (path, init) => fetch(`${other.url}${path}`, init), close: () => other.stop() };
    },
    close: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe("each edge function answers its own route under `deno serve`", () => {
  const dir = mkdtempSync(join(tmpdir(), "artifacts-deno-functions-"));
  const servers: Record<string, ServerProcess> = {};
  const names = ["create-artifact", "read-thread", "artifact-events"] as const;

  beforeAll(async () => {
    for (const name of names) servers[name] = await startDenoFunction(name, { DATA_DIR: dir });
  });
  afterAll(async () => {
    await Promise.all(Object.values(servers).map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("create-artifact, read-thread and artifact-events share one data folder, each serving only its route", async () => {
    const url = (name: (typeof names)[number]) => (servers[name] as ServerProcess).url;
    const threadId = `fn-${Date.now().toString(36)}`;
    const created = await fetch(`${url("create-artifact")}/v1/threads/${threadId}/artifacts`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ artifactType: "plan", payload: { from: "create-artifact" } }),
    });
    expect(created.status).toBe(201);
    const artifact = (await created.json()).artifact;

    const read = await fetch(`${url("read-thread")}/v1/threads/${threadId}`);
    expect(read.status).toBe(200);
    expect((await read.json()).thread.artifacts).toEqual([artifact]);

    const controller = new AbortController();
    const events = await fetch(`${url("artifact-events")}/v1/threads/${threadId}/events`, {
      signal: controller.signal,
    });
    expect(events.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reader = (events.body as ReadableStream<Uint8Array>).getReader();
    let text = "";
    while (!text.includes("event: artifact-updated")) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    controller.abort();
    expect(text).toContain(
      `id: 1\nevent: artifact-updated\ndata: ${JSON.stringify({ threadId, seq: 1, op: "add", artifact })}`,
    );

    // Every function serves its own route (and /healthz) and nothing else.
    expect(
      (await fetch(`${url("read-thread")}/v1/threads/${threadId}/artifacts`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      })).status,
    ).toBe(404);
    expect((await fetch(`${url("create-artifact")}/v1/threads/${threadId}`)).status).toBe(404);
    expect((await fetch(`${url("artifact-events")}/v1/threads`)).status).toBe(404);
    for (const name of names) expect((await fetch(`${url(name)}/healthz`)).status).toBe(200);
  });
});
