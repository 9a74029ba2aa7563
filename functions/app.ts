/**
 * Edge function: The whole API.
 * Runs with `deno serve functions/app.ts` and as a Cloudflare Worker (`export default { fetch }`).
 */
import { edgeEntry } from "../src/runtime/edge.ts";

// Workers need the Durable Object classes exported from the main module.
export { ThreadSequencer } from "../src/runtime/sequencer.ts";
export { TenantLimiter } from "../src/runtime/tenant-limiter.ts";
export { WebhookDeliverer } from "../src/runtime/webhook-deliverer.ts";

export default edgeEntry();
