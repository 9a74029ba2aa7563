/**
 * POSTs for the bench's writers (the edge bench's, the SSE load's) over node:http with a
 * keep-alive pool: the load generator shares this machine's two cores with the server
 * (or workerd and the stores), and `fetch` (undici) cost ~1.4 ms of the bench process's
 * CPU a create against ~0.6 for this (the edge bench: 16 writers on one thread, 10 s each
 * way). The body is read to its end; only the status is returned. With `timeoutMs` the
 * request is abandoned (rejected) after that long.
 */
import { Agent, request } from "node:http";

const agent = new Agent({ keepAlive: true, maxSockets: 64 });

export function httpPost(
  url: string,
  headers: Record<string, string>,
  body: string,
  options: { timeoutMs?: number } = {},
): Promise<number> {
  const target = new URL(url);
  return new Promise<number>((resolve, reject) => {
    const outgoing = request(
      {
        host: target.hostname,
        port: target.port,
        method: "POST",
        path: `${target.pathname}${target.search}`,
        agent,
        headers: { ...headers, "content-length": Buffer.byteLength(body) },
      },
      (response) => {
        response.on("error", reject);
        response.on("end", () => resolve(response.statusCode ?? 0));
        response.resume();
      },
    );
    if (options.timeoutMs !== undefined) {
      outgoing.setTimeout(options.timeoutMs, () => outgoing.destroy(new Error("POST timed out")));
    }
    outgoing.on("error", reject);
    outgoing.end(body);
  });
}
