/**
 * Edge function: Only GET /v1/threads/{threadId}/events (the artifact-updated stream), plus /healthz.
 * Runs with `deno serve functions/artifact-events.ts` and as a Cloudflare Worker (`export default { fetch }`).
 */
import { edgeEntry } from "../src/runtime/edge.ts";

export default edgeEntry("artifact-events");
