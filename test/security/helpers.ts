// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
/**
 * Test-side tools for the security suites: JWTs signed here with Web Crypto (never with
 * the code under test), a JWKS endpoint on loopback that counts its requests, a tiny
 * SSE reader, and rollout key listing.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { BlobStore } from "../../src/blob/port.ts";

const encoder = new TextEncoder();

export function base64url(input: Uint8Array | string): string {
  const bytes = typeof input === "string" ? encoder.encode(input) : input;
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export type Claims = Record<string, unknown>;

/** Seconds since the epoch, as JWT `exp`/`nbf` count them. */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function signingInput(header: Record<string, unknown>, claims: Claims): string {
  return `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
}

/** HS256 over `secret` (a string or raw bytes). */
export async function signHs256(
  secret: string | Uint8Array<ArrayBuffer>,
  claims: Claims,
  header: Record<string, unknown> = {},
): Promise<string> {
  const raw = typeof secret === "string" ? encoder.encode(secret) : secret;
  const key = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const input = signingInput({ alg: "HS256", typ: "JWT", ...header }, claims);
  const signature = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(input)));
  return `${input}.${base64url(signature)}`;
}

/** An unsecured JWS (`alg: none`) with an empty signature, or `signature` appended. */
export function unsignedJwt(
  claims: Claims,
  header: Record<string, unknown> = { alg: "none", typ: "JWT" },
  signature = "",
): string {
  return `${signingInput(header, claims)}.${signature}`;
}

export interface SigningKey {
  alg: "RS256" | "ES256";
  kid: string;
  privateKey: CryptoKey;
  /** The public JWK as a JWKS would publish it. */
  jwk: JsonWebKey & { kid: string; alg: string; use: string };
}

export async function generateSigningKey(alg: "RS256" | "ES256", kid: string): Promise<SigningKey> {
  const params = alg === "RS256"
    ? { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }
    : { name: "ECDSA", namedCurve: "P-256" };
  const pair = (await crypto.subtle.generateKey(params, true, ["sign", "verify"])) as CryptoKeyPair;
  const exported = await crypto.subtle.exportKey("jwk", pair.publicKey);
  const { key_ops: _ops, ext: _ext, ...publicJwk } = exported;
  return { alg, kid, privateKey: pair.privateKey, jwk: { ...publicJwk, kid, alg, use: "sig" } };
}

/** A JWS signed with `key`; the header carries its `kid` unless `header` overrides it. */
export async function signWithKey(
  key: SigningKey,
  claims: Claims,
  header: Record<string, unknown> = {},
): Promise<string> {
  const input = signingInput({ alg: key.alg, typ: "JWT", kid: key.kid, ...header }, claims);
  const algorithm = key.alg === "RS256" ? { name: "RSASSA-PKCS1-v1_5" } : { name: "ECDSA", hash: "SHA-256" };
  const signature = new Uint8Array(await crypto.subtle.sign(algorithm, key.privateKey, encoder.encode(input)));
  return `${input}.${base64url(signature)}`;
}

/** The public key as SPKI PEM text (what an attacker would try as an HMAC secret). */
export async function publicKeyPem(key: SigningKey): Promise<string> {
  const imported = await crypto.subtle.importKey(
    "jwk",
    key.jwk,
    key.alg === "RS256" ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } : { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["verify"],
  );
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", imported));
  let binary = "";
  for (const byte of spki) binary += String.fromCharCode(byte);
  const body = btoa(binary).replace(/.{64}/g, "$&\n");
  return `-----BEGIN PUBLIC KEY-----\n${body}\n-----END PUBLIC KEY-----\n`;
}

export interface JwksServer {
  url: string;
  /** HTTP requests received so far. */
  readonly requests: number;
  /** What the next requests are answered with. */
  setKeys(keys: unknown[]): void;
  /** Answer with this status and body instead of the key set (null: serve the keys again). */
  fail(failure: { status: number; body: string } | null): void;
  close(): Promise<void>;
}

/** A JWKS endpoint on 127.0.0.1 (ephemeral port) at `/jwks`. */
export async function startJwksServer(keys: unknown[] = []): Promise<JwksServer> {
  let current = keys;
  let failure: { status: number; body: string } | null = null;
  let requests = 0;
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    requests++;
    request.resume();
    if (failure) {
      response.writeHead(failure.status, { "content-type": "application/json" }).end(failure.body);
      return;
    }
    response.writeHead(200, { "content-type": "application/jwk-set+json" }).end(JSON.stringify({ keys: current }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/jwks`,
    get requests() {
      return requests;
    },
    setKeys(next) {
      current = next;
    },
    fail(next) {
      failure = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Every key the store holds under `tenants/`, ascending. */
export async function allKeys(store: BlobStore): Promise<string[]> {
  const keys: string[] = [];
  for (let page = 0; page < 10_000; page++) {
    const batch = await store.list("tenants/", {
      limit: 1000,
      ...(keys.length ? { startAfter: keys[keys.length - 1] as string } : {}),
    });
    keys.push(...batch);
    if (batch.length < 1000) return keys;
  }
  throw new Error("more than 10M keys");
}

/**
 * Every key the rollout writes (format 2): 1 tenant, 2 thread, 3 the object (a commit, a
 * snapshot, a delta, the pointer, a deleted thread's life marker).
 */
export const ROLLOUT_KEY =
  /^tenants\/([^/]+)\/threads\/([^/]+)\/(commits\/\d{12}\.json|snapshots\/\d{12}\.json|deltas\/\d{12}-\d{12}\.json|compaction\.json|life\.json)$/;

export interface SseEvent {
  id: string;
  event: string;
  data: string;
}

/**
 * Reads an event stream body as it arrives (id/event/data fields only, LF line ends,
 * which is what the service writes). `until` waits for a condition with a deadline.
 */
export class SseReader {
  readonly events: SseEvent[] = [];
  ended = false;
  #buffer = "";
  #listeners = new Set<() => void>();
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #pump: Promise<void>;

  constructor(body: ReadableStream<Uint8Array>) {
    this.#reader = body.getReader();
    this.#pump = this.#read();
  }

  async #read(): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await this.#reader.read();
        if (done) break;
        this.#buffer += decoder.decode(value, { stream: true });
        let blank: number;
        while ((blank = this.#buffer.indexOf("\n\n")) >= 0) {
          const block = this.#buffer.slice(0, blank);
          this.#buffer = this.#buffer.slice(blank + 2);
          const event: SseEvent = { id: "", event: "message", data: "" };
          let hasData = false;
          for (const line of block.split("\n")) {
            const colon = line.indexOf(":");
            if (colon === 0) continue;
            const name = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (name === "id") event.id = value;
            else if (name === "event") event.event = value;
            else if (name === "data") {
              event.data += hasData ? `\n${value}` : value;
              hasData = true;
            }
          }
          if (hasData) this.events.push(event);
        }
        for (const listener of [...this.#listeners]) listener();
      }
    } catch {
      // cancelled
    } finally {
      this.ended = true;
      for (const listener of [...this.#listeners]) listener();
    }
  }

  /** The parsed `data` of every `artifact-updated` event so far. */
  get updates(): any[] {
    return this.events.filter((e) => e.event === "artifact-updated").map((e) => JSON.parse(e.data));
  }

  until(predicate: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (predicate()) finish();
        else if (this.ended) finish(new Error(`stream ended before ${what}`));
      };
      const finish = (error?: Error) => {
        clearTimeout(timer);
        this.#listeners.delete(check);
        if (error) reject(error);
        else resolve();
      };
      const timer = setTimeout(() => finish(new Error(`timed out waiting for ${what}`)), timeoutMs);
      this.#listeners.add(check);
    });
  }

  async close(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
    await this.#pump;
  }
}
