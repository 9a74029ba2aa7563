/**
 * Edge function: Only GET /v1/threads/{threadId} (read-thread), plus /healthz.
 * Runs with `deno serve functions/read-thread.ts` and as a Cloudflare Worker (`export default { fetch }`).
 */
import { edgeEntry } from "../src/runtime/edge.ts";

export default edgeEntry("read-thread");
