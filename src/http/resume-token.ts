import { base64url, fromBase64url, hmacKey } from "./base64url.ts";
import { invalid } from "./problem.ts";

/**
 * Resume tokens of a multi-thread stream (`GET /v1/events`): each event's `id:` names
 * where every thread of the set stands, so an EventSource that reconnects with it as
 * `Last-Event-ID` resumes each thread exactly after what it was sent.
 *
 * Bytes: a version byte, then per thread 6 bytes of the FNV-1a-64 hash of its id and its
 * seq as a LEB128 varint; then base64url, ".", and the first 16 bytes of HMAC-SHA256 over
 * the tenant and the payload (the list cursors' secret). 100 threads at seqs below 2^21
 * take ~1.2 KB, at 2^53 ~1.9 KB: well inside the 8 KiB a header may take anywhere. The
 * hash is not a secret and needs no collision resistance (the MAC makes a token
 * unforgeable; a caller who names two of its own threads with colliding hashes only
 * confuses its own resume points); 48 bits make an accidental collision in a set of 100
 * about one in 10^11.
 */

const VERSION = 1;
const TAG_BYTES = 6;
const MAC_BYTES = 16;

/** A thread's 6-byte tag in tokens, as a string key (the bytes, one char each). */
export type ThreadTag = string;

export function tagOf(threadId: string): ThreadTag {
  let hash = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(threadId)) {
    hash ^= BigInt(byte);
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  let tag = "";
  for (let i = 0; i < TAG_BYTES; i++) tag += String.fromCharCode(Number((hash >> BigInt(8 * i)) & 0xffn));
  return tag;
}

export class ResumeTokenCodec {
  readonly #key: Promise<CryptoKey>;

  constructor(secret: string) {
    this.#key = hmacKey(secret);
  }

  /** The token for these positions (thread tag → seq), in the order given. */
  async encode(tenant: string, positions: Iterable<[ThreadTag, number]>): Promise<string> {
    const bytes: number[] = [VERSION];
    for (const [tag, seq] of positions) {
      for (let i = 0; i < TAG_BYTES; i++) bytes.push(tag.charCodeAt(i));
      writeVarint(bytes, seq);
    }
    const payload = new Uint8Array(bytes);
    return `${base64url(payload)}.${base64url(await this.#mac(tenant, payload))}`;
  }

  /** The positions a token names; a 400 for anything not minted by `encode` for this tenant. */
  async decode(tenant: string, token: string): Promise<Map<ThreadTag, number>> {
    const [payloadText, macText, extra] = token.split(".");
    if (!payloadText || !macText || extra !== undefined) throw badToken();
    const payload = fromBase64url(payloadText);
    const mac = fromBase64url(macText);
    if (!payload || !mac || mac.length !== MAC_BYTES) throw badToken();
    // Only the canonical text of those bytes: a last character that differs in unused bits is tampering too.
    if (base64url(payload) !== payloadText || base64url(mac) !== macText) throw badToken();
    if (!equalBytes(mac, await this.#mac(tenant, payload))) throw badToken();
    if (payload[0] !== VERSION) throw badToken();
    const positions = new Map<ThreadTag, number>();
    let at = 1;
    while (at < payload.length) {
      if (at + TAG_BYTES > payload.length) throw badToken();
      const tag = String.fromCharCode(...payload.subarray(at, at + TAG_BYTES));
      at += TAG_BYTES;
      const read = readVarint(payload, at);
      if (!read) throw badToken();
      positions.set(tag, read.value);
      at = read.next;
    }
    return positions;
  }

  async #mac(tenant: string, payload: Uint8Array): Promise<Uint8Array> {
    const tenantBytes = new TextEncoder().encode(tenant);
    const signed = new Uint8Array(tenantBytes.length + 1 + payload.length);
    signed.set(tenantBytes, 0);
    signed.set(payload, tenantBytes.length + 1);
    const signature = await crypto.subtle.sign("HMAC", await this.#key, signed);
    return new Uint8Array(signature, 0, MAC_BYTES);
  }
}

function writeVarint(out: number[], value: number): void {
  let rest = value;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

/** A LEB128 varint of at most 8 bytes (seqs are safe integers), or null. */
function readVarint(bytes: Uint8Array, from: number): { value: number; next: number } | null {
  let value = 0;
  let scale = 1;
  for (let at = from; at < bytes.length && at < from + 8; at++) {
    const byte = bytes[at] as number;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return Number.isSafeInteger(value) ? { value, next: at + 1 } : null;
    scale *= 0x80;
  }
  return null;
}

/** Compares in time independent of where the bytes differ. */
function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= (a[i] as number) ^ (b[i] as number);
  return difference === 0;
}

function badToken() {
  return invalid("Last-Event-ID is not a resume token of this stream issued to this caller");
}
