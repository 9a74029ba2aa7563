import type { ThreadCursor } from "../cache/port.ts";
import { base64url, fromBase64url, hmacKey } from "./base64url.ts";
import { invalid } from "./problem.ts";

/**
 * Opaque list cursors: base64url(JSON position) + "." + HMAC-SHA256 over the tenant
 * and the position. A tampered, truncated or other tenant's cursor fails closed (400).
 */
export class CursorCodec {
  readonly #key: Promise<CryptoKey>;

  constructor(secret: string) {
    this.#key = hmacKey(secret);
  }

  async encode(tenant: string, cursor: ThreadCursor): Promise<string> {
    const payload = base64url(new TextEncoder().encode(JSON.stringify([cursor.updatedAt, cursor.threadId])));
    const signature = await crypto.subtle.sign("HMAC", await this.#key, signedBytes(tenant, payload));
    return `${payload}.${base64url(new Uint8Array(signature))}`;
  }

  async decode(tenant: string, token: string): Promise<ThreadCursor> {
    const [payload, signature, extra] = token.split(".");
    if (!payload || !signature || extra !== undefined) throw badCursor();
    const signatureBytes = fromBase64url(signature);
    const payloadBytes = fromBase64url(payload);
    if (!signatureBytes || !payloadBytes) throw badCursor();
    const valid = await crypto.subtle.verify("HMAC", await this.#key, signatureBytes, signedBytes(tenant, payload));
    if (!valid) throw badCursor();
    const position: unknown = JSON.parse(new TextDecoder().decode(payloadBytes));
    if (
      !Array.isArray(position) || position.length !== 2 || typeof position[0] !== "string" ||
      typeof position[1] !== "string"
    ) {
      throw badCursor();
    }
    return { updatedAt: position[0], threadId: position[1] };
  }
}

function signedBytes(tenant: string, payload: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${tenant}\u0000${payload}`);
}

function badCursor() {
  return invalid("cursor is invalid or was issued for another caller");
}
