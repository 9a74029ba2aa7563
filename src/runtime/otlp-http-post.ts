/**
 * The POST of one OTLP/HTTP export from the Node server, with the SDK's retries: the
 * transport span-export.ts gives the SDK's export delegate in place of its own.
 *
 * Why not the SDK's transport: it pipes a `Readable` of the body into the request, so
 * every batch goes chunked through a stream, and it parses the URL on every export. Among
 * a busy server's requests a batch's post was the largest part of what the exporter costs
 * a create (docs/decisions.md, "Metrics and traces"). Here the body goes in one write with
 * its `Content-Length`. What is kept from the SDK: its settings as `convertLegacyHttpOptions`
 * reads them (`OTEL_EXPORTER_OTLP_HEADERS`, `_COMPRESSION`, certificates: the agent), and
 * its rules for a retry (below), written again here because the SDK does not export them.
 */
import type { Agent, IncomingMessage } from "node:http";
import { type ExportResponse, type IExporterTransport, OTLPExporterError } from "@opentelemetry/otlp-exporter-base";
import type { convertLegacyHttpOptions } from "@opentelemetry/otlp-exporter-base/node-http";

/** The SDK's retry policy: five retries after the first try, backoff from 1 s by 1.5× up to 5 s, ±20% jitter. */
const RETRIES = 5;
const FIRST_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 5000;
const BACKOFF_MULTIPLIER = 1.5;
const JITTER = 0.2;
/** A collector's answer is read up to this (the SDK's bound); past it the export fails. */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/** The statuses the OTLP spec says to retry. */
const RETRYABLE_STATUSES = new Set([429, 502, 503, 504]);
/** Network errors worth another try (the SDK's list). */
const RETRYABLE_ERRORS = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENOTFOUND",
  "ENETUNREACH",
  "EHOSTUNREACH",
]);

type Request = typeof import("node:http").request;
/** The SDK's settings for an OTLP/HTTP exporter on Node (its type is not exported by name). */
type OtlpNodeHttpConfiguration = ReturnType<typeof convertLegacyHttpOptions>;

/** `configuration` as `convertLegacyHttpOptions` gives it; `wait(ms)` is a timer (a test's may be faster). */
export function otlpHttpPost(
  configuration: OtlpNodeHttpConfiguration,
  wait: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
): IExporterTransport {
  const url = new URL(configuration.url);
  let client: Promise<{ agent: Agent; request: Request }> | undefined;
  const clientOf = () =>
    client ??= Promise.all([
      configuration.agentFactory(url.protocol) as Promise<Agent> | Agent,
      url.protocol === "https:"
        ? import("node:https").then((m) => m.request as Request)
        : import("node:http").then((m) => m.request),
    ]).then(([agent, request]) => ({ agent, request }));

  const postOnce = async (body: Uint8Array, timeoutMs: number): Promise<ExportResponse> => {
    const { agent, request } = await clientOf();
    const headers: Record<string, string> = { ...(await configuration.headers()) };
    headers["User-Agent"] = configuration.userAgent ? `${configuration.userAgent} ${USER_AGENT}` : USER_AGENT;
    if (configuration.compression === "gzip") {
      headers["Content-Encoding"] = "gzip";
      body = await gzipped(body);
    }
    headers["Content-Length"] = String(body.byteLength);
    return new Promise<ExportResponse>((resolve) => {
      const req = request(url, { method: "POST", headers, agent }, (res) => answerOf(res).then(resolve));
      req.setTimeout(timeoutMs, () => {
        req.destroy();
        resolve({ status: "retryable", error: new Error("Request timed out") });
      });
      req.on(
        "error",
        (error: NodeJS.ErrnoException) =>
          resolve({ status: error.code && RETRYABLE_ERRORS.has(error.code) ? "retryable" : "failure", error }),
      );
      req.end(body);
    });
  };

  return {
    async send(body, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      let backoffMs = FIRST_BACKOFF_MS;
      let response = await postOnce(body, timeoutMs);
      for (let retry = 0; response.status === "retryable" && retry < RETRIES; retry++) {
        const jittered = Math.min(backoffMs * (1 + (Math.random() * 2 - 1) * JITTER), MAX_BACKOFF_MS);
        backoffMs *= BACKOFF_MULTIPLIER;
        const inMs = response.retryInMillis ?? jittered;
        const leftMs = deadline - Date.now();
        if (inMs > leftMs) return response;
        await wait(Math.max(0, inMs));
        // A timer may fire late (a busy or paused process): no try starts past the deadline.
        const remainingMs = deadline - Date.now();
        if (remainingMs <= 0) return response;
        response = await postOnce(body, remainingMs);
      }
      return response;
    },
    shutdown() {},
  };
}

const USER_AGENT = "thread-artifacts OTLP/HTTP";

/** The collector's answer: its body on a 2xx (a partial success is in it), else what to do. */
function answerOf(res: IncomingMessage): Promise<ExportResponse> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_RESPONSE_BYTES) {
        res.destroy();
        resolve({ status: "failure", error: new Error(`the collector's answer is over ${MAX_RESPONSE_BYTES} bytes`) });
        return;
      }
      chunks.push(chunk);
    });
    res.on("error", (error) => resolve({ status: "failure", error }));
    res.on("end", () => {
      const status = res.statusCode ?? 0;
      if (status >= 200 && status <= 299) {
        resolve({ status: "success", data: Buffer.concat(chunks) });
      } else if (RETRYABLE_STATUSES.has(status)) {
        resolve({ status: "retryable", retryInMillis: retryAfterMs(res.headers["retry-after"]) });
      } else {
        // The SDK's error, whose code its export metrics read.
        resolve({
          status: "failure",
          error: new OTLPExporterError(res.statusMessage, status, Buffer.concat(chunks).toString()),
        });
      }
    });
  });
}

/** `Retry-After` (seconds or an HTTP date) in ms, as the SDK reads it; undefined when absent or unreadable. */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const seconds = Number.parseInt(value, 10);
  if (Number.isInteger(seconds)) return seconds > 0 ? seconds * 1000 : -1;
  const at = new Date(value).getTime();
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

async function gzipped(body: Uint8Array): Promise<Uint8Array> {
  const { gzip } = await import("node:zlib");
  return new Promise((resolve, reject) => gzip(body, (error, out) => (error ? reject(error) : resolve(out))));
}
