/**
 * JWT verification on Web Crypto alone (runs on Node, Deno and workerd). Only the
 * algorithms a key was configured for are accepted, so `alg: none` and algorithm
 * confusion (an RSA public key used as an HMAC secret) can never verify.
 */

export interface JwtClaims {
  sub?: unknown;
  tenant?: unknown;
  exp?: unknown;
  nbf?: unknown;
  [claim: string]: unknown;
}

export interface JwtHeader {
  alg?: unknown;
  kid?: unknown;
  typ?: unknown;
}

/** A token split and decoded, not yet trusted. */
export interface DecodedJwt {
  header: JwtHeader;
  claims: JwtClaims;
  signingInput: Uint8Array<ArrayBuffer>;
  signature: Uint8Array<ArrayBuffer>;
}

export class JwtError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "JwtError";
  }
}

const encoder = new TextEncoder();

export function decodeJwt(token: string): DecodedJwt {
  const parts = token.split(".");
  if (parts.length !== 3) throw new JwtError("not a JWS compact token");
  const [h, p, s] = parts as [string, string, string];
  const header = parseJsonObject(base64urlDecode(h), "header") as JwtHeader;
  // RFC 7515 §4.1.11: a token naming critical extensions must be refused by a verifier
  // that understands none of them, which is us.
  if ("crit" in header) throw new JwtError("critical header extensions are not supported");
  const claims = parseJsonObject(base64urlDecode(p), "claims") as JwtClaims;
  return { header, claims, signingInput: encoder.encode(`${h}.${p}`), signature: base64urlDecode(s) };
}

/** Checks `exp` and `nbf` (seconds since the epoch) with `skewSeconds` of tolerance. */
export function checkTimes(claims: JwtClaims, nowSeconds: number, skewSeconds: number): void {
  if (claims.exp !== undefined) {
    if (typeof claims.exp !== "number" || !Number.isFinite(claims.exp)) throw new JwtError("exp is not a number");
    if (nowSeconds - skewSeconds >= claims.exp) throw new JwtError("token expired");
  }
  if (claims.nbf !== undefined) {
    if (typeof claims.nbf !== "number" || !Number.isFinite(claims.nbf)) throw new JwtError("nbf is not a number");
    if (nowSeconds + skewSeconds < claims.nbf) throw new JwtError("token not yet valid");
  }
}

export type VerifyAlgorithm = "HS256" | "RS256" | "ES256";

export const SUBTLE_ALGORITHMS: Record<VerifyAlgorithm, AlgorithmIdentifier | RsaHashedImportParams | EcdsaParams> = {
  HS256: { name: "HMAC", hash: "SHA-256" } as AlgorithmIdentifier,
  RS256: { name: "RSASSA-PKCS1-v1_5" },
  ES256: { name: "ECDSA", hash: "SHA-256" } as EcdsaParams,
};

export async function verifySignature(decoded: DecodedJwt, key: CryptoKey, alg: VerifyAlgorithm): Promise<void> {
  if (decoded.header.alg !== alg) throw new JwtError("algorithm not allowed for this key");
  const ok = await crypto.subtle.verify(SUBTLE_ALGORITHMS[alg], key, decoded.signature, decoded.signingInput);
  if (!ok) throw new JwtError("bad signature");
}

function parseJsonObject(bytes: Uint8Array, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new JwtError(`${what} is not JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new JwtError(`${what} is not an object`);
  }
  return value as Record<string, unknown>;
}

export function base64urlDecode(text: string): Uint8Array<ArrayBuffer> {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new JwtError("bad base64url");
  try {
    const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  } catch {
    throw new JwtError("bad base64url");
  }
}
