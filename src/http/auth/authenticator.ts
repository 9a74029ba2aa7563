import { TENANT_PATTERN } from "../../model/ids.ts";
import { JwksKeySet } from "./jwks.ts";
import { checkTimes, decodeJwt, JwtError, verifySignature } from "./jwt.ts";

export interface AuthSettings {
  /** Static bearer tokens and the tenant each one maps to. */
  tokens: ReadonlyMap<string, string>;
  /** HS256 secret. */
  jwtSecret: string | undefined;
  /** RS256/ES256 keys. */
  jwksUrl: string | undefined;
  /** Tolerance for `exp` / `nbf` (seconds). */
  clockSkewSeconds: number;
}

export function authConfigured(settings: AuthSettings): boolean {
  return settings.tokens.size > 0 || settings.jwtSecret !== undefined || settings.jwksUrl !== undefined;
}

/** One key set per URL per isolate, so per-request wiring (Workers) does not refetch it. */
const keySets = new Map<string, JwksKeySet>();

/**
 * Turns a bearer token into a tenant, or null. Never throws for a bad token and never
 * says why a token failed (the reason goes nowhere near the response or the logs).
 */
export class Authenticator {
  readonly #tokenDigests: Promise<Map<string, string>>;
  readonly #hmacKey: Promise<CryptoKey> | undefined;
  readonly #jwks: JwksKeySet | undefined;
  readonly #skew: number;
  readonly #now: () => number;

  constructor(settings: AuthSettings, options: { fetch?: typeof fetch; now?: () => number } = {}) {
    // Tokens are kept as SHA-256 digests: the lookup then takes the same path for any token.
    this.#tokenDigests = (async () => {
      const map = new Map<string, string>();
      for (const [token, tenant] of settings.tokens) map.set(await sha256Hex(token), tenant);
      return map;
    })();
    this.#hmacKey = settings.jwtSecret
      ? crypto.subtle.importKey(
        "raw",
        new TextEncoder().encode(settings.jwtSecret),
        { name: "HMAC", hash: "SHA-256" },
        false,
        ["verify"],
      )
      : undefined;
    if (settings.jwksUrl) {
      const url = settings.jwksUrl;
      if (options.fetch || options.now) {
        // A caller-supplied fetch or clock gets its own key set, driven by that clock too.
        this.#jwks = new JwksKeySet({
          url,
          ...(options.fetch ? { fetch: options.fetch } : {}),
          ...(options.now ? { now: options.now } : {}),
        });
      } else {
        this.#jwks = keySets.get(url) ?? new JwksKeySet({ url });
        keySets.set(url, this.#jwks);
      }
    }
    this.#skew = settings.clockSkewSeconds;
    this.#now = options.now ?? (() => Date.now());
  }

  async tenantOf(token: string): Promise<string | null> {
    if (token.length === 0 || token.length > 8192) return null;
    const staticTenant = (await this.#tokenDigests).get(await sha256Hex(token));
    if (staticTenant !== undefined) return staticTenant;
    if (!this.#hmacKey && !this.#jwks) return null;
    try {
      const decoded = decodeJwt(token);
      const alg = decoded.header.alg;
      if (alg === "HS256" && this.#hmacKey) {
        await verifySignature(decoded, await this.#hmacKey, "HS256");
      } else if ((alg === "RS256" || alg === "ES256") && this.#jwks) {
        const kid = typeof decoded.header.kid === "string" ? decoded.header.kid : undefined;
        const key = await this.#jwks.keyFor(kid);
        await verifySignature(decoded, key.key, key.alg);
      } else {
        return null;
      }
      checkTimes(decoded.claims, Math.floor(this.#now() / 1000), this.#skew);
      // A `tenant` claim that is present but unusable is refused, never replaced by `sub`.
      const tenant = decoded.claims.tenant !== undefined ? decoded.claims.tenant : decoded.claims.sub;
      return typeof tenant === "string" && TENANT_PATTERN.test(tenant) ? tenant : null;
    } catch (error) {
      if (error instanceof JwtError) return null;
      throw error;
    }
  }
}

async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}
