/**
 * The OTLP/HTTP post of the Node server's span export (src/runtime/otlp-http-post.ts)
 * against a real HTTP server in the test: one write with its Content-Length, the SDK's
 * settings (headers, gzip), and the SDK's retry rules (which statuses and errors, how
 * long between tries, the deadline, the number of tries). Waits between tries go through
 * a recording stand-in for the timer, so the test sees each wait without taking it.
 */
import type { ServerResponse } from "node:http";
import { gunzipSync } from "node:zlib";
import { convertLegacyHttpOptions } from "@opentelemetry/otlp-exporter-base/node-http";
import { afterEach, describe, expect, it, vi } from "vitest";
import { otlpHttpPost, retryAfterMs } from "../../src/runtime/otlp-http-post.ts";
import { closedPort } from "../support/cluster.ts";
import { type Collector, expectCollectorRefusal, startCollector } from "../support/http-collector.ts";

let collecting: Collector | undefined;
/** A collector for this test (closed after it), answering each request with `answer(i)`. */
const collector = async (answer: (i: number, res: ServerResponse) => void) => collecting = await startCollector(answer);
afterEach(async () => {
  vi.restoreAllMocks();
  await collecting?.close();
  collecting = undefined;
});

const settings = (url: string, extra: Record<string, unknown> = {}) =>
  convertLegacyHttpOptions({ url, ...extra }, "TRACES", "v1/traces", { "Content-Type": "application/x-protobuf" });

/** A timer stand-in that records each wait and takes none. */
function recordedWaits() {
  const waits: number[] = [];
  return { waits, wait: (ms: number) => (waits.push(ms), Promise.resolve()) };
}

const body = new Uint8Array(Array.from({ length: 70_000 }, (_, i) => i % 251));

describe("OTLP/HTTP post", () => {
  it("posts the body in one request with its Content-Length (not chunked), the settings' headers and a User-Agent", async () => {
    const { url, got } = await collector((_, res) => res.writeHead(200).end());
    const post = otlpHttpPost(settings(url, { headers: { "x-tenant": "acme" } }));
    expect(await post.send(body, 5000)).toMatchObject({ status: "success" });
    expect(got).toHaveLength(1);
    expect(got[0]!.body.equals(Buffer.from(body))).toBe(true);
    expect(got[0]!.headers["content-length"]).toBe(String(body.length));
    expect(got[0]!.headers["transfer-encoding"]).toBeUndefined();
    expect(got[0]!.headers["content-type"]).toBe("application/x-protobuf");
    expect(got[0]!.headers["x-tenant"]).toBe("acme");
    expect(got[0]!.headers["user-agent"]).toMatch(/OTLP/);
  });

  it("hands back the collector's answer on a 2xx (a partial success is read from it)", async () => {
    const { url } = await collector((_, res) => res.writeHead(200).end(Buffer.from([1, 2, 3])));
    const response = await otlpHttpPost(settings(url)).send(body, 5000);
    expect(response.status).toBe("success");
    expect(Buffer.from((response as { data: Uint8Array }).data)).toEqual(Buffer.from([1, 2, 3]));
  });

  it("gzips the body when the settings say so", async () => {
    const { url, got } = await collector((_, res) => res.writeHead(200).end());
    await otlpHttpPost(settings(url, { compression: "gzip" })).send(body, 5000);
    expect(got[0]!.headers["content-encoding"]).toBe("gzip");
    expect(got[0]!.headers["content-length"]).toBe(String(got[0]!.body.length));
    expect(gunzipSync(got[0]!.body).equals(Buffer.from(body))).toBe(true);
  });

  it("retries a 503 after its Retry-After, and a 429 and a 502 after the backoff (1 s, then 1.5×, ±20%)", async () => {
    const statuses = [503, 429, 502, 200];
    const { url, got } = await collector((i, res) =>
      res.writeHead(statuses[i]!, i === 0 ? { "retry-after": "2" } : {}).end()
    );
    const { waits, wait } = recordedWaits();
    expect(await otlpHttpPost(settings(url), wait).send(body, 60_000)).toMatchObject({ status: "success" });
    expect(got).toHaveLength(4);
    expect(got.every((request) => request.body.equals(Buffer.from(body)))).toBe(true);
    expect(waits[0]).toBe(2000);
    expect(waits[1]).toBeGreaterThanOrEqual(1500 * 0.8);
    expect(waits[1]).toBeLessThanOrEqual(1500 * 1.2);
    expect(waits[2]).toBeGreaterThanOrEqual(2250 * 0.8);
    expect(waits[2]).toBeLessThanOrEqual(2250 * 1.2);
  });

  it("gives up after five retries, answering retryable", async () => {
    const { url, got } = await collector((_, res) => res.writeHead(503).end());
    const { waits, wait } = recordedWaits();
    expect(await otlpHttpPost(settings(url), wait).send(body, 600_000)).toMatchObject({ status: "retryable" });
    expect(got).toHaveLength(6);
    expect(waits).toHaveLength(5);
    expect(Math.max(...waits)).toBeLessThanOrEqual(5000);
  });

  it("makes no retry that would start past the export's deadline", async () => {
    const { url, got } = await collector((_, res) => res.writeHead(503, { "retry-after": "30" }).end());
    const { waits, wait } = recordedWaits();
    expect(await otlpHttpPost(settings(url), wait).send(body, 10_000)).toMatchObject({ status: "retryable" });
    expect(got).toHaveLength(1);
    expect(waits).toEqual([]);
  });

  it("makes no retry when the wait for it ended past the deadline (a timer that fired late)", async () => {
    const { url, got } = await collector((_, res) => res.writeHead(503, { "retry-after": "1" }).end());
    let now = Date.now();
    vi.spyOn(Date, "now").mockImplementation(() => now);
    const late = (ms: number) => {
      now += ms + 5000;
      return Promise.resolve();
    };
    expect(await otlpHttpPost(settings(url), late).send(body, 3000)).toMatchObject({ status: "retryable" });
    expect(got).toHaveLength(1);
  });

  it("fails a 400 at once, with the SDK's error and its status", async () => {
    const { url, got } = await collector((_, res) => res.writeHead(400).end("bad spans"));
    const { waits, wait } = recordedWaits();
    const response = await otlpHttpPost(settings(url), wait).send(body, 5000);
    expectCollectorRefusal(response, 400, "bad spans");
    expect(got).toHaveLength(1);
    expect(waits).toEqual([]);
  });

  it("retries a collector that refuses connections, then answers retryable", async () => {
    const { waits, wait } = recordedWaits();
    const url = `http://127.0.0.1:${await closedPort()}/v1/traces`;
    const response = await otlpHttpPost(settings(url), wait).send(body, 600_000);
    expect(response.status).toBe("retryable");
    expect((response as { error: NodeJS.ErrnoException }).error.code).toBe("ECONNREFUSED");
    expect(waits).toHaveLength(5);
  });

  it("answers retryable when the collector does not answer within the export's time", async () => {
    const { url, got } = await collector(() => {/* never answers */});
    const response = await otlpHttpPost(settings(url)).send(body, 200);
    expect(response.status).toBe("retryable");
    expect((response as { error: Error }).error.message).toMatch(/timed out/);
    expect(got).toHaveLength(1);
  });
});

describe("Retry-After", () => {
  it("reads seconds and HTTP dates as the SDK does", () => {
    const now = Date.parse("2026-12-06T12:00:00Z");
    expect(retryAfterMs(undefined, now)).toBeUndefined();
    expect(retryAfterMs("120", now)).toBe(120_000);
    expect(retryAfterMs("0", now)).toBe(-1);
    expect(retryAfterMs("Sun, 06 Dec 2026 12:00:30 GMT", now)).toBe(30_000);
    expect(retryAfterMs("Sun, 06 Dec 2026 11:00:00 GMT", now)).toBe(0);
    expect(retryAfterMs("soon", now)).toBeUndefined();
  });
});
