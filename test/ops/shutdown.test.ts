/**
 * SIGTERM with an event stream open, on the Node server and under `deno task serve`:
 * the server ends the stream itself (a clean end of the body, which a client resumes
 * elsewhere with Last-Event-ID) and exits, rather than keeping the stream until its
 * maximum lifetime or being cut off mid-stream by the forced exit.
 */
import { once } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { Cluster, http } from "../support/cluster.ts";
import { type ServerProcess, startDenoServer, startServer } from "../support/server-process.ts";
import { SseConnection } from "../support/sse.ts";

const cluster = new Cluster();
const started: ServerProcess[] = [];
afterEach(async () => {
  for (const server of started.splice(0)) await server.kill();
  await cluster.cleanup();
});

const RUNTIMES = [
  { name: "Node server", start: startServer },
  { name: "deno task serve", start: startDenoServer },
];

describe("SIGTERM with an event stream open", () => {
  for (const runtime of RUNTIMES) {
    it(`${runtime.name}: the stream ends cleanly and the process exits with 0`, async () => {
      const server = await runtime.start({ DATA_DIR: cluster.tempDir(), SSE_MAX_LIFETIME_MS: "600000" });
      started.push(server);
      const created = await http(server.url, "POST", "/v1/threads/closing/artifacts", { artifactType: "note", payload: 1 });
      expect(created.status, created.text).toBe(201);
      const stream = await SseConnection.open(`${server.url}/v1/threads/closing/events`);
      await stream.untilSeq(1);

      const exited = once(server.child, "exit");
      server.child.kill("SIGTERM");
      await stream.untilEnded({ timeoutMs: 30_000 });
      expect(stream.error).toBeUndefined();
      expect(stream.seqs).toEqual([1]);
      const [code, signal] = await exited;
      expect({ code, signal }).toEqual({ code: 0, signal: null });
    });
  }
});
