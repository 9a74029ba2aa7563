/**
 * Load process for single timed requests (cold reads): `{url}` → one GET, timed from
 * just before the request to the end of the body with the monotonic clock.
 */
import { Agent, request } from "node:http";
import { serveRequests } from "../lib/worker.ts";

// A fresh connection per probe: the server under test is a fresh process every time.
const agent = new Agent({ keepAlive: false });

export interface ProbeResult {
  status: number;
  ms: number;
  bytes: number;
  source: string | null;
}

serveRequests<{ url: string }, ProbeResult>(
  ({ url }) =>
    new Promise((resolve, reject) => {
      const start = performance.now();
      const req = request(url, { agent }, (res) => {
        let bytes = 0;
        res.on("data", (chunk: Buffer) => (bytes += chunk.length));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            ms: performance.now() - start,
            bytes,
            source: (res.headers["x-artifacts-source"] as string | undefined) ?? null,
          }));
      });
      req.setTimeout(60_000, () => req.destroy(new Error("probe timed out")));
      req.on("error", reject);
      req.end();
    }),
);
