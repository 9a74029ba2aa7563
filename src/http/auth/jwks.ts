import { JwtError, type VerifyAlgorithm } from "./jwt.ts";

interface Jwk {
  kid?: string;
  kty?: string;
  alg?: string;
  use?: string;
  crv?: string;
  [member: string]: unknown;
}

interface UsableKey {
  alg: VerifyAlgorithm;
  key: CryptoKey;
}

export interface JwksOptions {
  url: string;
  fetch?: typeof fetch;
  /** Keys are re-fetched after this long even without an unknown `kid` (ms). */
  maxAgeMs?: number;
  /** An unknown `kid` triggers at most one re-fetch per this interval (ms): a flood of forged kids cannot hammer the issuer. */
  minRefreshIntervalMs?: number;
  now?: () => number;
}

/**
 * A JSON Web Key Set from `url`, cached; an unknown `kid` re-fetches it (key
 * rotation), rate-limited. Only RSA keys (RS256) and P-256 EC keys (ES256) are used,
 * each only for its own algorithm.
 */
export class JwksKeySet {
  readonly #options: Required<JwksOptions>;
  #keys = new Map<string, UsableKey>();
  #fetchedAt = -Infinity;
  #inflight: Promise<void> | null = null;

  constructor(options: JwksOptions) {
    this.#options = {
      fetch: globalThis.fetch.bind(globalThis),
      maxAgeMs: 10 * 60_000,
      minRefreshIntervalMs: 30_000,
      now: () => Date.now(),
      ...options,
    };
  }

  async keyFor(kid: string | undefined): Promise<UsableKey> {
    const now = this.#options.now();
    // Stale keys are re-fetched; if the issuer is unreachable, the keys we have stay in use.
    if (now - this.#fetchedAt > this.#options.maxAgeMs) await this.#refresh().catch(() => {});
    let found = this.#find(kid);
    if (!found && this.#options.now() - this.#fetchedAt >= this.#options.minRefreshIntervalMs) {
      await this.#refresh();
      found = this.#find(kid);
    }
    if (!found) throw new JwtError("unknown signing key");
    return found;
  }

  #find(kid: string | undefined): UsableKey | undefined {
    if (kid !== undefined) return this.#keys.get(kid);
    // Without a kid, only an unambiguous set can be used.
    return this.#keys.size === 1 ? [...this.#keys.values()][0] : undefined;
  }

  #refresh(): Promise<void> {
    this.#inflight ??= this.#load().finally(() => {
      this.#inflight = null;
    });
    return this.#inflight;
  }

  async #load(): Promise<void> {
    let body: { keys?: unknown };
    try {
      const response = await this.#options.fetch(this.#options.url, {
        headers: { accept: "application/json" },
        signal: AbortSignal.timeout(5000),
      });
      if (!response.ok) throw new Error(`status ${response.status}`);
      body = (await response.json()) as { keys?: unknown };
    } catch {
      // Keep the keys we have; try again no sooner than the refresh interval allows.
      this.#fetchedAt = this.#options.now();
      throw new JwtError("signing keys unavailable");
    }
    const keys = new Map<string, UsableKey>();
    for (const jwk of Array.isArray(body.keys) ? (body.keys as Jwk[]) : []) {
      const usable = await importJwk(jwk);
      if (usable) keys.set(jwk.kid ?? `#${keys.size}`, usable);
    }
    this.#keys = keys;
    this.#fetchedAt = this.#options.now();
  }
}

async function importJwk(jwk: Jwk): Promise<UsableKey | null> {
  if (jwk.use !== undefined && jwk.use !== "sig") return null;
  let alg: VerifyAlgorithm;
  if (jwk.kty === "RSA" && (jwk.alg === undefined || jwk.alg === "RS256")) alg = "RS256";
  else if (jwk.kty === "EC" && jwk.crv === "P-256" && (jwk.alg === undefined || jwk.alg === "ES256")) alg = "ES256";
  else return null;
  const params: RsaHashedImportParams | EcKeyImportParams = alg === "RS256"
    ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }
    : { name: "ECDSA", namedCurve: "P-256" };
  try {
    const { d: _private, ...publicOnly } = jwk;
    const key = await crypto.subtle.importKey("jwk", { ...publicOnly, ext: true } as JsonWebKey, params, false, [
      "verify",
    ]);
    return { alg, key };
  } catch {
    return null;
  }
}
