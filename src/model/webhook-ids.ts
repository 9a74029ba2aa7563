/**
 * A webhook's id and its signing secret (API.md "Webhooks"). Pure: Web Crypto's random
 * source only.
 */

import { uuidv7 } from "./ids.ts";

/** `wh_` and 32 lowercase hex digits: a safe key segment. */
export const WEBHOOK_ID_PATTERN = /^wh_[0-9a-f]{32}$/;

/**
 * `wh_` and a UUIDv7 without its dashes: time-ordered, so the registry, which lists by id,
 * lists a tenant's webhooks in the order they were created; 74 random bits keep ids apart
 * (they are names, not secrets: every route checks the tenant).
 */
export function newWebhookId(now: number = Date.now()): string {
  return `wh_${uuidv7(now).replaceAll("-", "")}`;
}

export function isWebhookId(value: string): boolean {
  return WEBHOOK_ID_PATTERN.test(value);
}

/** Standard Webhooks' secret prefix; what follows is the key in standard base64. */
export const WEBHOOK_SECRET_PREFIX = "whsec_";

/** Key bytes of a secret: 192 bits, within the 24-64 bytes Standard Webhooks asks for. */
const SECRET_BYTES = 24;

/**
 * A new signing secret, `whsec_` + standard base64 of 24 random bytes (32 characters, no
 * padding): the form `new Webhook(secret)` of every Standard Webhooks library accepts.
 */
export function newWebhookSecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(SECRET_BYTES));
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return `${WEBHOOK_SECRET_PREFIX}${btoa(binary)}`;
}
