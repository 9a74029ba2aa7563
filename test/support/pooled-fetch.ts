/**
 * A `fetch` whose first request goes over a connection opened earlier, as a client's
 * connection pool (undici's, a browser's) keeps spare sockets and reuses them. If that
 * connection has been closed by the server meanwhile, the request goes over a new one,
 * as a pool does with a dead socket. Enough HTTP/1.1 for GETs of event streams:
 * status line, headers, and a chunked or close-delimited body.
 */
import { once } from "node:events";
import { connect, type Socket } from "node:net";

export interface PooledFetch {
  fetch: typeof fetch;
  /** Whether the first request went over the spare connection. */
  readonly reused: boolean;
}

/** Opens the spare connection now; the returned fetch uses it once. */
export async function pooledFetch(origin: string): Promise<PooledFetch> {
  const { hostname, port } = new URL(origin);
  const spare: Socket = connect(Number(port), hostname);
  await once(spare, "connect");
  spare.on("error", () => {});
  let closed = false;
  spare.once("close", () => (closed = true));
  let used = false;
  let reused = false;
  const doFetch: typeof fetch = async (input, init) => {
    if (used || closed || spare.destroyed) return fetch(input, init);
    used = true;
    reused = true;
    return requestOver(spare, new URL(String(input instanceof Request ? input.url : input)), init);
  };
  return {
    fetch: doFetch,
    get reused() {
      return reused;
    },
  };
}

function requestOver(socket: Socket, url: URL, init: RequestInit | undefined): Promise<Response> {
  const headers = new Headers(init?.headers);
  const lines = [`${init?.method ?? "GET"} ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`];
  headers.forEach((value, name) => lines.push(`${name}: ${value}`));
  socket.write(`${lines.join("\r\n")}\r\n\r\n`);
  const signal = init?.signal;
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    let body: ReadableStreamDefaultController<Uint8Array> | undefined;
    let chunked = false;
    let pending = Buffer.alloc(0);
    const onAbort = () => socket.destroy();
    signal?.addEventListener("abort", onAbort, { once: true });
    const deliver = (bytes: Buffer) => {
      if (!chunked) return body?.enqueue(new Uint8Array(bytes));
      pending = Buffer.concat([pending, bytes]);
      for (;;) {
        const lineEnd = pending.indexOf("\r\n");
        if (lineEnd < 0) return;
        const size = Number.parseInt(pending.subarray(0, lineEnd).toString(), 16);
        if (size === 0) {
          body?.close();
          body = undefined;
          socket.destroy();
          return;
        }
        if (pending.length < lineEnd + 2 + size + 2) return;
        body?.enqueue(new Uint8Array(pending.subarray(lineEnd + 2, lineEnd + 2 + size)));
        pending = pending.subarray(lineEnd + 2 + size + 2);
      }
    };
    socket.on("data", (chunk: Buffer) => {
      if (body) return deliver(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      const [statusLine = "", ...headerLines] = head.subarray(0, end).toString().split("\r\n");
      const status = Number(statusLine.split(" ")[1]);
      const responseHeaders = new Headers();
      for (const line of headerLines) {
        const colon = line.indexOf(":");
        responseHeaders.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
      }
      chunked = /chunked/i.test(responseHeaders.get("transfer-encoding") ?? "");
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          body = controller;
        },
        cancel() {
          socket.destroy();
        },
      });
      responseHeaders.delete("transfer-encoding");
      resolve(new Response(stream, { status, headers: responseHeaders }));
      const rest = head.subarray(end + 4);
      if (rest.length > 0) deliver(rest);
    });
    socket.once("close", () => {
      signal?.removeEventListener("abort", onAbort);
      if (body) {
        try {
          body.error(new TypeError("terminated"));
        } catch {
          // already closed
        }
      } else reject(new TypeError("fetch failed: the connection closed before a response"));
    });
  });
}
