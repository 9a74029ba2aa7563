/**
 * The Node server's HTTP client for webhook deliveries: the slice of `fetch` that
 * deliver.ts uses (one `POST` with a string body, no redirect followed, a deadline by
 * `signal`, the status), over `node:http`/`node:https` with keep-alive agents.
 *
 * Why not the global `fetch` (undici): measured on the 2-core bench machine, a `POST` to
 * a loopback receiver costs ~0.3 ms of CPU through `fetch` against ~0.09 through
 * `node:http` (client and server in one process), and with 20 webhooks on every thread a
 * saturated server paid ~4% of its create throughput for the difference (docs/decisions.md,
 * "Webhooks"). Deno keeps its native `fetch`.
 *
 * What deliver.ts relies on, kept: a redirect is an answer like any other (node:http never
 * follows one); the deadline covers the answer too (the signal stays attached until the
 * answer is read); an abort rejects with the signal's reason's name (`TimeoutError` /
 * `AbortError`), a connection failure with the socket's error. The answer is read here,
 * at most MAX_RESPONSE_BYTES of it (then the connection is dropped rather than drained),
 * and the `Response` handed back has no body: the status is all a delivery keeps.
 */
import { Agent as HttpAgent, type IncomingMessage, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { type DeliveryRequest, MAX_RESPONSE_BYTES } from "../webhooks/deliver.ts";

const httpAgent = new HttpAgent({ keepAlive: true });
const httpsAgent = new HttpsAgent({ keepAlive: true });

export function nodeDeliveryFetch(input: string, init: DeliveryRequest): Promise<Response> {
  const url = new URL(input);
  const https = url.protocol === "https:";
  if (!https && url.protocol !== "http:") return Promise.reject(new TypeError(`unsupported protocol ${url.protocol}`));
  const { body, signal } = init;
  return new Promise<Response>((resolve, reject) => {
    if (signal.aborted) return reject(abortError(signal));
    const request = (https ? httpsRequest : httpRequest)(url, {
      method: init.method,
      headers: { ...init.headers, "content-length": String(Buffer.byteLength(body)) },
      agent: https ? httpsAgent : httpAgent,
    });
    let response: IncomingMessage | null = null;
    const onAbort = () => {
      const error = abortError(signal);
      request.destroy(error);
      response?.destroy(error);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    const settle = (outcome: () => void) => {
      signal.removeEventListener("abort", onAbort);
      outcome();
    };
    request.on("error", (error) => settle(() => reject(error)));
    request.on("response", (answer) => {
      response = answer;
      const status = answer.statusCode ?? 0;
      let read = 0;
      answer.on("data", (chunk: Buffer) => {
        read += chunk.byteLength;
        // Past the limit the rest is not worth reading: the connection goes, the status stays.
        if (read > MAX_RESPONSE_BYTES) {
          answer.destroy();
          settle(() => resolve(statusOnly(status)));
        }
      });
      answer.on("end", () => settle(() => resolve(statusOnly(status))));
      answer.on("error", (error) => settle(() => reject(error)));
    });
    request.end(body);
  });
}

/** A body-less answer with `status` (a Response can hold any status from 200 to 599 without a body). */
function statusOnly(status: number): Response {
  return status >= 200 && status <= 599 ? new Response(null, { status }) : Response.error();
}

function abortError(signal: AbortSignal): Error {
  const reason = signal.reason;
  return reason instanceof Error ? reason : new DOMException("The operation was aborted", "AbortError");
}
