import { Agent, type ClientRequest, type IncomingMessage, request } from "node:http";

export interface SseConnection {
  /** Resolves once the response headers and the first bytes (retry line, control event) arrived. */
  ready: Promise<void>;
  close(): void;
  /** Whether the server ended or broke the stream. */
  readonly ended: boolean;
}

/** One agent for every stream: no pooling limit, no keep-alive (each stream owns its socket). */
const agent = new Agent({ keepAlive: false, maxSockets: Infinity });

/**
 * A minimal SSE reader over node:http, cheap enough for 1,000 streams in one process:
 * `onData(data, receivedAt)` for each event's data (multi-line data joined with "\n"),
 * with `receivedAt` taken once per chunk from the monotonic clock, before parsing.
 */
export function openSse(
  url: string,
  onData: (data: string, receivedAt: number) => void,
  headers: Record<string, string> = {},
): SseConnection {
  let req: ClientRequest | undefined;
  let res: IncomingMessage | undefined;
  let ended = false;
  let buffer = "";
  const ready = new Promise<void>((resolve, reject) => {
    req = request(url, { agent, headers: { accept: "text/event-stream", ...headers } }, (response) => {
      res = response;
      if (response.statusCode !== 200) {
        reject(new Error(`SSE ${url}: HTTP ${response.statusCode}`));
        response.resume();
        return;
      }
      response.setEncoding("utf8");
      let first = true;
      response.on("data", (chunk: string) => {
        const receivedAt = performance.now();
        if (first) {
          first = false;
          resolve();
        }
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let data: string | null = null;
          for (const line of block.split("\n")) {
            if (line.startsWith("data:")) {
              const value = line.slice(line[5] === " " ? 6 : 5);
              data = data === null ? value : `${data}\n${value}`;
            }
          }
          if (data !== null) onData(data, receivedAt);
        }
      });
      response.on("end", () => (ended = true));
      response.on("error", () => (ended = true));
    });
    req.on("error", (error) => {
      ended = true;
      reject(error);
    });
    req.end();
  });
  // A stream closed by us before it was ready must not surface as an unhandled rejection.
  ready.catch(() => {});
  return {
    ready,
    close() {
      ended = true;
      res?.destroy();
      req?.destroy();
    },
    get ended() {
      return ended;
    },
  };
}

/** Opens `count` streams, `batch` at a time, waiting for each batch to be ready. Bounded by `timeoutMs`. */
export async function openMany(
  count: number,
  urlOf: (index: number) => string,
  onData: (index: number, data: string, receivedAt: number) => void,
  options: { batch?: number; timeoutMs?: number } = {},
): Promise<SseConnection[]> {
  const batch = options.batch ?? 100;
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  const connections: SseConnection[] = [];
  try {
    for (let start = 0; start < count; start += batch) {
      const group: SseConnection[] = [];
      for (let i = start; i < Math.min(count, start + batch); i++) {
        group.push(openSse(urlOf(i), (data, at) => onData(i, data, at)));
      }
      connections.push(...group);
      const left = deadline - Date.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(group.map((c) => c.ready)),
        new Promise((
          _,
          reject,
        ) => (timer = setTimeout(
          () => reject(new Error(`only some of ${count} streams opened in time`)),
          Math.max(0, left),
        ))),
      ]).finally(() => clearTimeout(timer));
    }
  } catch (error) {
    for (const c of connections) c.close();
    throw error;
  }
  return connections;
}
