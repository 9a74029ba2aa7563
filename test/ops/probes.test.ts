/**
 * `/livez` and `/readyz` (API.md "Operations"): liveness asks no store; readiness is 200
 * while the rollout store answers within 2 s (the cache may be down: the body says so),
 * 503 when it does not, and 503 from the moment a shutdown starts draining. Neither needs
 * a token. In process, and on a real Node server: a rollout store nobody answers, and
 * SIGTERM with a request in flight, /readyz asked on its connection while the process drains.
 */
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { MemoryBlobStore } from "../../src/blob/memory.ts";
import type { BlobStore } from "../../src/blob/port.ts";
import { closedPort, http, useCluster } from "../support/cluster.ts";
import { FaultyBlobStore } from "../support/faulty-blob-store.ts";
import { useTestApps } from "../support/in-process.ts";
import { jsonLines } from "../support/logs.ts";
import { waitFor } from "../support/wait.ts";

describe("probes in process", () => {
  const app = useTestApps();

  it("200 while serving, without a token (authentication configured)", async () => {
    const a = app({ env: { AUTH_TOKENS: "probe-token:tenant-probe" } });
    expect(await a.request("GET", "/livez")).toMatchObject({ status: 200, json: { live: true } });
    expect(await a.request("GET", "/readyz")).toMatchObject({
      status: 200,
      json: { ready: true, draining: false, rollout: "up", cache: "up" },
    });
    expect((await a.request("GET", "/v1/threads")).status).toBe(401);
  });

  it("/readyz: 503 with the rollout store down; /livez stays 200 and /healthz as it was", async () => {
    const store = new FaultyBlobStore(new MemoryBlobStore(), 3, { down: true });
    const a = app({ blobStore: store });
    expect(await a.request("GET", "/readyz")).toMatchObject({
      status: 503,
      json: { ready: false, draining: false, rollout: "down", cache: "up" },
    });
    expect(await a.request("GET", "/livez")).toMatchObject({ status: 200, json: { live: true } });
    expect(await a.request("GET", "/healthz")).toMatchObject({
      status: 503,
      json: { ok: false, rollout: "down", cache: "up" },
    });
    store.configure({ down: false });
    expect((await a.request("GET", "/readyz")).status).toBe(200);
  });

  it("/readyz: 200 with the cache down, and the body says so", async () => {
    const a = app({ libsqlUrl: `http://127.0.0.1:${await closedPort()}` });
    expect(await a.request("GET", "/readyz")).toMatchObject({
      status: 200,
      json: { ready: true, rollout: "up", cache: "down" },
    });
  });

  it("/readyz: 503 when the rollout store does not answer within 2 s", async () => {
    const hanging: BlobStore = Object.assign(Object.create(new MemoryBlobStore()) as BlobStore, {
      list: () => new Promise<string[]>(() => {}),
    });
    const a = app({ blobStore: hanging });
    expect(await a.request("GET", "/readyz")).toMatchObject({
      status: 503,
      json: { ready: false, rollout: "down", cache: "up" },
    });
  });

  it("/readyz: 503 from the moment a shutdown drains; /livez still 200", async () => {
    const a = app();
    expect((await a.request("GET", "/readyz")).status).toBe(200);
    a.feeds.drain();
    expect(await a.request("GET", "/readyz")).toMatchObject({ status: 503, json: { ready: false, draining: true } });
    expect((await a.request("GET", "/livez")).status).toBe(200);
  });
});

/** Everything a raw connection receives until the server closes it. */
function received(socket: Socket): { text: () => string; closed: Promise<void> } {
  let text = "";
  socket.on("data", (chunk: Buffer) => (text += chunk.toString()));
  socket.on("error", () => {});
  return { text: () => text, closed: new Promise((resolve) => socket.once("close", () => resolve())) };
}

describe("probes of a Node server process", () => {
  const cluster = useCluster();

  it("/readyz is 503 while the rollout store refuses connections; /livez is 200", async () => {
    const port = await closedPort();
    const server = await cluster.start({
      DATA_DIR: cluster.tempDir("artifacts-probes-"),
      BLOB_STORE: `s3://bucket?endpoint=${encodeURIComponent(`http://127.0.0.1:${port}`)}&region=us-east-1`,
      AWS_ACCESS_KEY_ID: "probe-key",
      AWS_SECRET_ACCESS_KEY: "probe-secret",
    });
    expect(await http(server.url, "GET", "/readyz")).toMatchObject({
      status: 503,
      json: { ready: false, draining: false, rollout: "down" },
    });
    expect(await http(server.url, "GET", "/livez")).toMatchObject({ status: 200, json: { live: true } });
  });

  it("/readyz is 503 once SIGTERM has started the drain, asked on the connection of a request in flight", async () => {
    const server = await cluster.start({ DATA_DIR: cluster.tempDir("artifacts-probes-") });
    expect((await http(server.url, "GET", "/readyz")).status).toBe(200);
    const { port, hostname } = new URL(server.url);
    const socket = connect(Number(port), hostname);
    await once(socket, "connect");
    const answer = received(socket);
    // A create whose body is not all there yet: in flight from the moment the server has
    // its head (it says so with 100 Continue), until the rest of the body comes.
    const body = JSON.stringify({ artifactType: "note", payload: { n: 1 } });
    socket.write(
      "POST /v1/threads/draining/artifacts HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n" +
        `Content-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n\r\n${body.slice(0, 10)}`,
    );
    await waitFor("100 Continue", () => answer.text().includes("100 Continue"));
    const exited = once(server.child, "exit");
    server.child.kill("SIGTERM");
    await waitFor(
      "the drain to start",
      () => jsonLines(server.output()).some((r) => r.msg === "SIGTERM: shutting down; draining"),
    );
    // The listener is closed now; the connection of the request in flight is the way in.
    socket.write(`${body.slice(10)}GET /readyz HTTP/1.1\r\nHost: test\r\n\r\n`);
    await answer.closed;
    const responses = answer.text().split(/(?=HTTP\/1\.1 )/).filter((r) => !r.startsWith("HTTP/1.1 100"));
    expect(responses.map((r) => r.slice(0, 12))).toEqual(["HTTP/1.1 201", "HTTP/1.1 503"]);
    const readyz = responses[1] as string;
    expect(readyz).toMatch(/\r\nx-request-id: [0-9a-f-]{36}\r\n/i);
    expect(JSON.parse(readyz.slice(readyz.indexOf("\r\n\r\n") + 4))).toEqual({ ready: false, draining: true });
    const [code] = await exited;
    expect(code).toBe(0);
  });
});
