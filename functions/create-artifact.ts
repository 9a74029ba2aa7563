/**
 * Edge function: Only POST /v1/threads/{threadId}/artifacts (create-artifact), plus /healthz.
 * Runs with `deno serve functions/create-artifact.ts` and as a Cloudflare Worker (`export default { fetch }`).
 */
import { edgeEntry } from "../src/runtime/edge.ts";

export default edgeEntry("create-artifact");
