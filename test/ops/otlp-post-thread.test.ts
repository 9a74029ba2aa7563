/**
 * The span export's posts on their own thread (src/runtime/otlp-post-thread.ts) against a
 * real HTTP server in the test: the batch's bytes reach the collector from the thread
 * (Node's `http.client.request.start` channel, which fires on the thread that makes the
 * request, stays silent on this one), the settings are read from the environment there,
 * the answers come back as the SDK's delegate reads them (its error class, the status, the
 * network error's code), and a thread that fails hands the posts to the event loop.
 */
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { mkdtempSync, writeFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { type IExporterTransport, OTLPExporterError } from "@opentelemetry/otlp-exporter-base";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { exporterSettings, plainResponse, responseOf } from "../../src/runtime/otlp-post-messages.ts";
import { otlpPostThread } from "../../src/runtime/otlp-post-thread.ts";
import { closedPort } from "../support/cluster.ts";
import { type Collector, expectCollectorRefusal, startCollector } from "../support/http-collector.ts";

const CONTENT_TYPE = "application/x-protobuf";
const body = new Uint8Array(Array.from({ length: 70_000 }, (_, i) => i % 251));

let collecting: Collector | undefined;
/** A collector for this test (closed after it), answering each request with `answer(i)`. */
const collector = async (answer: (i: number, res: ServerResponse) => void) => collecting = await startCollector(answer);
let transport: IExporterTransport | undefined;
/** Requests this thread's HTTP client started. */
let requestsHere = 0;
const countRequest = () => requestsHere++;
beforeEach(() => {
  requestsHere = 0;
  subscribe("http.client.request.start", countRequest);
});
afterEach(async () => {
  unsubscribe("http.client.request.start", countRequest);
  vi.unstubAllEnvs();
  transport?.shutdown();
  transport = undefined;
  await collecting?.close();
  collecting = undefined;
});

/** The transport as span-export.ts makes it, to `url`. */
function threadTo(url: string, worker?: URL): IExporterTransport {
  const settings = { url, contentType: CONTENT_TYPE };
  return transport = otlpPostThread(exporterSettings(settings), settings, worker);
}

describe("OTLP/HTTP posts on their own thread", () => {
  it("posts each batch from the thread, with the environment's headers, and hands back the collector's answer", async () => {
    vi.stubEnv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme");
    const { url, got } = await collector((_, res) => res.writeHead(200).end(Buffer.from([1, 2, 3])));
    const post = threadTo(url);
    for (let i = 0; i < 2; i++) {
      const response = await post.send(body, 5000);
      expect(response.status).toBe("success");
      expect(Buffer.from((response as { data: Uint8Array }).data)).toEqual(Buffer.from([1, 2, 3]));
    }
    expect(got).toHaveLength(2);
    expect(got.every((request) => request.body.equals(Buffer.from(body)))).toBe(true);
    expect(got[0]!.headers["content-type"]).toBe(CONTENT_TYPE);
    expect(got[0]!.headers["content-length"]).toBe(String(body.length));
    expect(got[0]!.headers["x-tenant"]).toBe("acme");
    expect(requestsHere).toBe(0);
  });

  it("answers a collector's 400 with the SDK's error, its status and its body", async () => {
    const { url, got } = await collector((_, res) => res.writeHead(400).end("bad spans"));
    const response = await threadTo(url).send(body, 5000);
    expectCollectorRefusal(response, 400, "bad spans");
    expect(got).toHaveLength(1);
  });

  it("answers a refused connection retryable, with the network error's code", async () => {
    // Past the first try, the next (after ~1 s) would start past the post's deadline.
    const response = await threadTo(`http://127.0.0.1:${await closedPort()}/v1/traces`).send(body, 500);
    expect(response.status).toBe("retryable");
    expect((response as { error: NodeJS.ErrnoException }).error.code).toBe("ECONNREFUSED");
    expect(requestsHere).toBe(0);
  });

  it("fails the post in flight when the thread fails, and makes the next ones on the event loop", async () => {
    const { url, got } = await collector((_, res) => res.writeHead(200).end());
    const broken = join(mkdtempSync(join(tmpdir(), "otlp-post-thread-")), "broken.mjs");
    writeFileSync(broken, 'throw new Error("the post thread could not start");\n');
    const post = threadTo(url, pathToFileURL(broken));
    const inFlight = await post.send(body, 5000);
    expect(inFlight.status).toBe("failure");
    expect((inFlight as { error: Error }).error.message).toMatch(/could not start/);
    expect(got).toHaveLength(0);
    expect(await post.send(body, 5000)).toMatchObject({ status: "success" });
    expect(got).toHaveLength(1);
    expect(got[0]!.body.equals(Buffer.from(body))).toBe(true);
    expect(requestsHere).toBe(1);
  });
});

describe("a post's answer between the threads", () => {
  it("keeps a success's body, a retryable's wait and code, and a failure's class, status and body", () => {
    const data = new Uint8Array([7, 8]);
    expect(responseOf(structuredClone(plainResponse({ status: "success", data })))).toEqual({
      status: "success",
      data,
    });
    expect(responseOf(structuredClone(plainResponse({ status: "success" })))).toEqual({ status: "success" });

    const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    const retryable = responseOf(
      structuredClone(plainResponse({ status: "retryable", retryInMillis: 2000, error: refused })),
    );
    expect(retryable).toMatchObject({ status: "retryable", retryInMillis: 2000 });
    const retryError = (retryable as { error: NodeJS.ErrnoException }).error;
    expect(retryError.message).toBe("connect ECONNREFUSED");
    expect(retryError.code).toBe("ECONNREFUSED");
    expect(responseOf(structuredClone(plainResponse({ status: "retryable" })))).toEqual({ status: "retryable" });

    const failure = responseOf(
      structuredClone(plainResponse({ status: "failure", error: new OTLPExporterError("Bad Request", 400, "no") })),
    );
    const error = (failure as { error: OTLPExporterError }).error;
    expect(error).toBeInstanceOf(OTLPExporterError);
    expect([error.message, error.code, error.data]).toEqual(["Bad Request", 400, "no"]);
  });
});
