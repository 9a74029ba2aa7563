import { createLocalJWKSet, errors, type FlattenedJWSInput, type JWK, type JWSHeaderParameters } from "jose";

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
 * A JSON Web Key Set from `url`, cached, as a key resolver for jose's `jwtVerify`: jose
 * picks the key (by `kid`, key type, `alg`, `use`, curve) and does all the cryptography;
 * this class only decides when to fetch. An unknown `kid` re-fetches the set (key
 * rotation), rate-limited. Not jose's `createRemoteJWKSet`: when a refetch of stale
 * keys fails it fails every token, where we keep the keys we have while the issuer is
 * down, and its clock (`Date.now()`) cannot be injected.
 */
export class JwksKeySet {
  readonly #options: Required<JwksOptions>;
  #keys: { resolve: ReturnType<typeof createLocalJWKSet>; size: number } | null = null;
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

  /** The key for a token's header; throws (a bad token) when there is none. */
  async keyFor(header: JWSHeaderParameters, token?: FlattenedJWSInput): Promise<CryptoKey> {
    const now = this.#options.now();
    // Stale keys are re-fetched; if the issuer is unreachable, the keys we have stay in use.
    if (now - this.#fetchedAt > this.#options.maxAgeMs) await this.#refresh().catch(() => {});
    try {
      return await this.#find(header, token);
    } catch (error) {
      const mayRefresh = this.#options.now() - this.#fetchedAt >= this.#options.minRefreshIntervalMs;
      if (!(error instanceof errors.JWKSNoMatchingKey) || !mayRefresh) throw error;
    }
    await this.#refresh();
    return this.#find(header, token);
  }

  async #find(header: JWSHeaderParameters, token: FlattenedJWSInput | undefined): Promise<CryptoKey> {
    // Without a kid, only an unambiguous set can be used (jose alone would take the one key of the token's type).
    if (!this.#keys || (header.kid === undefined && this.#keys.size !== 1)) throw new errors.JWKSNoMatchingKey();
    return this.#keys.resolve(header, token);
  }

  #refresh(): Promise<void> {
    this.#inflight ??= this.#load().finally(() => {
      this.#inflight = null;
    });
    return this.#inflight;
  }

  async #load(): Promise<void> {
    try {
      const response = await this.#options.fetch(this.#options.url, {
        headers: { accept: "application/jwk-set+json, application/json" },
        signal: AbortSignal.timeout(5000),
      });
      if (!response.ok) throw new Error(`status ${response.status}`);
      const body = (await response.json()) as { keys?: unknown } | null;
      if (!Array.isArray(body?.keys)) throw new Error("not a JSON Web Key Set");
      const keys = body.keys.filter(isSigningKey);
      this.#keys = { resolve: createLocalJWKSet({ keys }), size: keys.length };
    } catch (cause) {
      // Keep the keys we have (even past their age); try again no sooner than the refresh interval allows.
      throw new errors.JOSEError("signing keys unavailable", { cause });
    } finally {
      this.#fetchedAt = this.#options.now();
    }
  }
}

/**
 * Only RSA keys (RS256) and P-256 EC keys (ES256) for signatures are kept: anything else
 * (encryption or symmetric keys, other algorithms or curves, non-objects) never reaches
 * jose, and never makes a set of one usable key ambiguous.
 */
function isSigningKey(jwk: unknown): jwk is JWK {
  if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk)) return false;
  const { kty, alg, use, crv } = jwk as JWK;
  if (use !== undefined && use !== "sig") return false;
  if (kty === "RSA") return alg === undefined || alg === "RS256";
  return kty === "EC" && crv === "P-256" && (alg === undefined || alg === "ES256");
}
