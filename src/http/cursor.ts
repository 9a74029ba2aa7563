import type { ThreadCursor } from "../cache/port.ts";
import { isWebhookId } from "../model/webhook-ids.ts";
import { base64url, fromBase64url, hmacKey } from "./base64url.ts";
import { invalid } from "./problem.ts";

/**
 * Opaque list cursors (the thread list, an artifact's versions, the webhook list): base64url(JSON
 * position) + "." + HMAC-SHA256 over the tenant and the position. A tampered, truncated or other tenant's cursor fails closed (400).
 */
export class CursorCodec {
  readonly #key: Promise<CryptoKey>;

  constructor(secret: string) {
    this.#key = hmacKey(secret);
  }

  /** A thread-list position: `[updatedAt, threadId]`. */
  encode(tenant: string, cursor: ThreadCursor): Promise<string> {
    return this.#seal(tenant, [cursor.updatedAt, cursor.threadId]);
  }

  async decode(tenant: string, token: string): Promise<ThreadCursor> {
    const position = await this.#open(tenant, token);
    if (position.length !== 2 || typeof position[0] !== "string" || typeof position[1] !== "string") throw badCursor();
    return { updatedAt: position[0], threadId: position[1] };
  }

  /**
   * A position in one artifact's version list: `["versions", threadId/artifactId, seq]`,
   * so a cursor of one list is refused by every other (and by the thread list).
   */
  encodeVersions(tenant: string, scope: string, afterSeq: number): Promise<string> {
    return this.#seal(tenant, ["versions", scope, afterSeq]);
  }

  async decodeVersions(tenant: string, scope: string, token: string): Promise<number> {
    const position = await this.#open(tenant, token);
    const [kind, forScope, seq] = position;
    if (position.length !== 3 || kind !== "versions" || forScope !== scope || !Number.isSafeInteger(seq)) {
      throw badCursor();
    }
    return seq as number;
  }

  /** A position in the webhook list: `["webhooks", afterId]` (ids ascending). */
  encodeWebhooks(tenant: string, afterId: string): Promise<string> {
    return this.#seal(tenant, ["webhooks", afterId]);
  }

  async decodeWebhooks(tenant: string, token: string): Promise<string> {
    const position = await this.#open(tenant, token);
    const [kind, afterId] = position;
    if (position.length !== 2 || kind !== "webhooks" || typeof afterId !== "string" || !isWebhookId(afterId)) {
      throw badCursor();
    }
    return afterId;
  }

  async #seal(tenant: string, position: unknown[]): Promise<string> {
    const payload = base64url(new TextEncoder().encode(JSON.stringify(position)));
    const signature = await crypto.subtle.sign("HMAC", await this.#key, signedBytes(tenant, payload));
    return `${payload}.${base64url(new Uint8Array(signature))}`;
  }

  async #open(tenant: string, token: string): Promise<unknown[]> {
    const [payload, signature, extra] = token.split(".");
    if (!payload || !signature || extra !== undefined) throw badCursor();
    const signatureBytes = fromBase64url(signature);
    const payloadBytes = fromBase64url(payload);
    if (!signatureBytes || !payloadBytes) throw badCursor();
    const valid = await crypto.subtle.verify("HMAC", await this.#key, signatureBytes, signedBytes(tenant, payload));
    if (!valid) throw badCursor();
    const position: unknown = JSON.parse(new TextDecoder().decode(payloadBytes));
    if (!Array.isArray(position)) throw badCursor();
    return position;
  }
}

function signedBytes(tenant: string, payload: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${tenant}\u0000${payload}`);
}

function badCursor() {
  return invalid("cursor is invalid or was issued for another caller");
}
