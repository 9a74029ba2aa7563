/**
 * Load process for memory: opens N SSE streams and keeps them idle. Requests:
 * `{op: "open", url, count}` or `{op: "open", urls}` answers once all are open; `{op: "close"}` closes them.
 */
import { openMany, type SseConnection } from "../lib/sse-client.ts";
import { serveRequests } from "../lib/worker.ts";

type IdleRequest =
  | { op: "open"; url: string; count: number }
  | { op: "open"; urls: string[] }
  | { op: "close" };

let open: SseConnection[] = [];

serveRequests<IdleRequest, { open: number; ended: number; ms: number }>(async (req) => {
  const start = performance.now();
  if (req.op === "open") {
    // `{i}` in the URL becomes the stream's index (one thread per stream); or one URL per stream.
    const urlOf = "urls" in req
      ? (i: number) => req.urls[i] as string
      : (i: number) => req.url.replace("{i}", String(i));
    open = await openMany("urls" in req ? req.urls.length : req.count, urlOf, () => {}, {
      batch: 100,
      timeoutMs: 60_000,
    });
  } else {
    for (const c of open) c.close();
  }
  const result = { open: open.length, ended: open.filter((c) => c.ended).length, ms: performance.now() - start };
  if (req.op === "close") open = [];
  return result;
});
