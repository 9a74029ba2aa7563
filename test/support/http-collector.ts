/**
 * An HTTP server in the test that records each request (headers and whole body) and
 * answers it as the test says: a stand-in for an OTLP collector, to see what a post sent.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type ExportResponse, OTLPExporterError } from "@opentelemetry/otlp-exporter-base";
import { expect } from "vitest";

export interface Received {
  headers: IncomingMessage["headers"];
  body: Buffer;
}

export interface Collector {
  /** Its `/v1/traces` URL. */
  url: string;
  /** The requests so far, in order. */
  got: Received[];
  close(): Promise<void>;
}

/** A collector answering each request with `answer(i)` (the i-th request, from 0). */
export async function startCollector(answer: (i: number, res: ServerResponse) => void): Promise<Collector> {
  const got: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      got.push({ headers: req.headers, body: Buffer.concat(chunks) });
      answer(got.length - 1, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`,
    got,
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Expects `response` to be a failure with the SDK's error for HTTP `status`, carrying the collector's `body`. */
export function expectCollectorRefusal(response: ExportResponse, status: number, body: string): void {
  expect(response.status).toBe("failure");
  const error = (response as { error: unknown }).error;
  expect(error).toBeInstanceOf(OTLPExporterError);
  expect((error as OTLPExporterError).code).toBe(status);
  expect((error as OTLPExporterError).data).toBe(body);
}
