/**
 * Edge function: The whole API.
 * Runs with `deno serve functions/app.ts` and as a Cloudflare Worker (`export default { fetch }`).
 */
import { edgeEntry } from "../src/runtime/edge.ts";

// Workers need the Durable Object class exported from the main module.
export { ThreadHub } from "../src/live/thread-hub.ts";

export default edgeEntry();
