/**
 * A loopback HTTP proxy that stands between a server and one of its stores (the test
 * S3 server, the Hrana libSQL server) and plays the network: it counts requests, can
 * delay each one (a store a region away), and can answer 503 for a while (a store
 * failing) without the upstream ever seeing the request. Requests pass unchanged (the
 * Host header included, so signed requests still verify upstream).
 */
import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";

export interface FaultProxy {
  /** The proxy's origin, to use in place of the upstream's. */
  endpoint: string;
  /** Requests answered so far (failed ones included). */
  readonly count: number;
  /** `METHOD path` of every request, in arrival order (not cleared by `resetCount`). */
  readonly log: readonly string[];
  /**
   * With `timed`: each answered request's method, path, arrival (`performance.now()` of
   * this process) and milliseconds from its arrival to its answer's last byte, the
   * injected delay included (cleared by `resetCount`).
   */
  readonly timings: readonly ProxyTiming[];
  /** Milliseconds added before each request is forwarded. */
  delayMs: number;
  /** While true, every request is answered 503 at once. */
  failing: boolean;
  resetCount(): void;
  close(): Promise<void>;
}

export interface ProxyTiming {
  method: string;
  /** The request's path and query, as sent. */
  path: string;
  /** When it arrived (`performance.now()`). */
  at: number;
  ms: number;
}

export async function startFaultProxy(
  upstream: string,
  options: { delayMs?: number; failing?: boolean; timed?: boolean } = {},
): Promise<FaultProxy> {
  const target = new URL(upstream);
  let count = 0;
  const log: string[] = [];
  const timings: ProxyTiming[] = [];
  const state = { delayMs: options.delayMs ?? 0, failing: options.failing ?? false };
  const server = createServer((incoming, outgoing) => {
    count++;
    log.push(`${incoming.method} ${decodeURIComponent(incoming.url ?? "")}`);
    if (options.timed) {
      const arrived = performance.now();
      outgoing.once("finish", () =>
        timings.push({
          method: incoming.method ?? "",
          path: incoming.url ?? "",
          at: arrived,
          ms: performance.now() - arrived,
        }));
    }
    if (state.failing) {
      incoming.resume();
      outgoing.writeHead(503, { "content-type": "text/plain", "retry-after": "1" }).end("injected failure");
      return;
    }
    const forward = () => {
      const upstreamRequest = httpRequest(
        {
          host: target.hostname,
          port: target.port,
          method: incoming.method,
          path: incoming.url,
          headers: incoming.headers,
        },
        (response) => {
          outgoing.writeHead(response.statusCode ?? 502, response.headers);
          response.pipe(outgoing);
        },
      );
      upstreamRequest.on("error", () => {
        if (!outgoing.headersSent) outgoing.writeHead(502).end();
        else outgoing.destroy();
      });
      incoming.pipe(upstreamRequest);
    };
    if (state.delayMs > 0) setTimeout(forward, state.delayMs);
    else forward();
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    log,
    timings,
    get count() {
      return count;
    },
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(ms: number) {
      state.delayMs = ms;
    },
    get failing() {
      return state.failing;
    },
    set failing(value: boolean) {
      state.failing = value;
    },
    resetCount() {
      count = 0;
      timings.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
