/**
 * The span export's post thread (see otlp-post-thread.ts): reads the exporter's settings
 * from the environment as the event loop's side does, and posts each batch it is sent
 * (otlp-http-post.ts, with its retries), answering with the result.
 */
import { parentPort, workerData } from "node:worker_threads";
import { convertLegacyHttpOptions } from "@opentelemetry/otlp-exporter-base/node-http";
import { otlpHttpPost } from "./otlp-http-post.ts";
import { plainResponse, type PostAnswer, type PostRequest } from "./otlp-post-messages.ts";
import type { PostThreadSettings } from "./otlp-post-thread.ts";

const { url, contentType } = workerData as PostThreadSettings;
const post = otlpHttpPost(convertLegacyHttpOptions({ url }, "TRACES", "v1/traces", { "Content-Type": contentType }));

parentPort?.on("message", async ({ id, body, timeoutMs }: PostRequest) => {
  const response = await post.send(body, timeoutMs);
  parentPort?.postMessage({ id, response: plainResponse(response) } satisfies PostAnswer);
});
