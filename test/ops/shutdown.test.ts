/**
 * SIGTERM with an event stream open, on the Node server and under `deno task serve`:
 * the server ends the stream itself (a clean end of the body, which a client resumes
 * elsewhere with Last-Event-ID) and exits, rather than keeping the stream until its
 * maximum lifetime or being cut off mid-stream by the forced exit.
 */
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { http, useCluster } from "../support/cluster.ts";
import { startDenoServer, startServer } from "../support/server-process.ts";
import { SseConnection } from "../support/sse.ts";

const cluster = useCluster();

const RUNTIMES = [
  { name: "Node server", start: startServer },
  { name: "deno task serve", start: startDenoServer },
];

describe("SIGTERM with an event stream open", () => {
  for (const runtime of RUNTIMES) {
    it(`${runtime.name}: the stream ends cleanly and the process exits with 0`, async () => {
      const server = await cluster.start({ DATA_DIR: cluster.tempDir(), SSE_MAX_LIFETIME_MS: "600000" }, runtime.start);
      const created = await http(server.url, "POST", "/v1/threads/closing/artifacts", {
        artifactType: "note",
        payload: 1,
      });
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

/** Everything a raw connection receives until the server closes it. */
function received(socket: Socket): Promise<string> {
  let text = "";
  socket.on("data", (chunk) => (text += chunk.toString()));
  return new Promise((resolve) => {
    socket.on("close", () => resolve(text));
    socket.on("error", () => {});
  });
}

describe("SIGTERM with a client connection that has not sent a request yet (a pool's spare socket)", () => {
  for (const runtime of RUNTIMES) {
    it(`${runtime.name}: the draining process closes it instead of answering what comes on it`, async () => {
      const server = await cluster.start({ DATA_DIR: cluster.tempDir(), SSE_MAX_LIFETIME_MS: "600000" }, runtime.start);
      const { port, hostname } = new URL(server.url);
      const spare = connect(Number(port), hostname);
      await once(spare, "connect");
      const answer = received(spare);
      // A stream open at SIGTERM, so there is a drain to wait for.
      const stream = await SseConnection.open(`${server.url}/v1/threads/spare/events`);
      await stream.until((c) => c.parser.retries.length > 0, "the stream to start");
      const exited = once(server.child, "exit");
      server.child.kill("SIGTERM");
      await stream.untilEnded({ timeoutMs: 30_000 });
      // Whatever the pool sends on the spare connection now must not be served by the
      // old process (its successor may already be listening).
      if (!spare.destroyed) {
        spare.write("GET /v1/threads/spare/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n");
      }
      expect(await answer).toBe("");
      const [code] = await exited;
      expect(code).toBe(0);
    });
  }
});
