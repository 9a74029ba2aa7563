/**
 * The span export's post thread (see otlp-post-thread.ts): reads the exporter's settings
 * from the environment as the event loop's side does, and posts each batch it is sent
 * (otlp-http-post.ts, with its retries), answering with the result.
 */
import { parentPort, workerData } from "node:worker_threads";
import { otlpHttpPost } from "./otlp-http-post.ts";
import {
  exporterSettings,
  plainResponse,
  type PostAnswer,
  type PostRequest,
  type PostThreadSettings,
} from "./otlp-post-messages.ts";

const post = otlpHttpPost(exporterSettings(workerData as PostThreadSettings));

parentPort?.on("message", async ({ id, body, timeoutMs }: PostRequest) => {
  const response = await post.send(body, timeoutMs);
  parentPort?.postMessage({ id, response: plainResponse(response) } satisfies PostAnswer);
});
