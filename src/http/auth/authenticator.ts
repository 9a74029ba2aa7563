import { jwtVerify, type JWTVerifyGetKey } from "jose";
import { sha256Hex } from "../../model/digest.ts";
import { TENANT_PATTERN } from "../../model/ids.ts";
import { JwksKeySet } from "./jwks.ts";

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

/** The authenticator for these settings, or null when they configure no authentication. */
export function authenticatorFor(settings: AuthSettings): Authenticator | null {
  return authConfigured(settings) ? new Authenticator(settings) : null;
}

/** One key set per URL per isolate, so per-request wiring (Workers) does not refetch it. */
const keySets = new Map<string, JwksKeySet>();

/**
 * Turns a bearer token into a tenant, or null. Never throws for a bad token and never
 * says why a token failed (the reason goes nowhere near the response or the logs).
 * JWTs are verified by jose: signature, `crit`, `exp` / `nbf` with the configured skew.
 */
export class Authenticator {
  readonly #tokenDigests: Promise<Map<string, string>>;
  readonly #key: JWTVerifyGetKey;
  /** HS256 with the secret, RS256/ES256 with the key set: never `none`, never another alg. */
  readonly #algorithms: string[];
  readonly #skew: number;
  readonly #now: () => number;

  constructor(settings: AuthSettings, options: { fetch?: typeof fetch; now?: () => number } = {}) {
    // Tokens are kept as SHA-256 digests: the lookup then takes the same path for any token.
    this.#tokenDigests = (async () => {
      const map = new Map<string, string>();
      for (const [token, tenant] of settings.tokens) map.set(await sha256Hex(token), tenant);
      return map;
    })();
    const secret = settings.jwtSecret ? new TextEncoder().encode(settings.jwtSecret) : undefined;
    let jwks: JwksKeySet | undefined;
    if (settings.jwksUrl) {
      const url = settings.jwksUrl;
      if (options.fetch || options.now) {
        // A caller-supplied fetch or clock gets its own key set, driven by that clock too.
        jwks = new JwksKeySet({
          url,
          ...(options.fetch ? { fetch: options.fetch } : {}),
          ...(options.now ? { now: options.now } : {}),
        });
      } else {
        jwks = keySets.get(url) ?? new JwksKeySet({ url });
        keySets.set(url, jwks);
      }
    }
    this.#algorithms = [...(secret ? ["HS256"] : []), ...(jwks ? ["RS256", "ES256"] : [])];
    // jose checks the header's alg against #algorithms before asking for a key, and the
    // key's type against the alg after: the secret is only ever an HMAC key, and a
    // public key is never one (no algorithm confusion).
    this.#key = (header, token) => {
      if (header.alg === "HS256" && secret) return secret;
      if (header.alg !== "HS256" && jwks) return jwks.keyFor(header, token);
      throw new Error("no key for this algorithm");
    };
    this.#skew = settings.clockSkewSeconds;
    this.#now = options.now ?? (() => Date.now());
  }

  async tenantOf(token: string): Promise<string | null> {
    if (token.length === 0 || token.length > 8192) return null;
    const staticTenant = (await this.#tokenDigests).get(await sha256Hex(token));
    if (staticTenant !== undefined) return staticTenant;
    if (this.#algorithms.length === 0) return null;
    let claims: Record<string, unknown>;
    try {
      ({ payload: claims } = await jwtVerify(token, this.#key, {
        algorithms: this.#algorithms,
        clockTolerance: this.#skew,
        currentDate: new Date(this.#now()),
      }));
    } catch {
      // Whatever failed (the token, its claims, its key, the issuer), it is a 401, never a 5xx.
      return null;
    }
    // A `tenant` claim that is present but unusable is refused, never replaced by `sub`.
    const tenant = claims.tenant !== undefined ? claims.tenant : claims.sub;
    return typeof tenant === "string" && TENANT_PATTERN.test(tenant) ? tenant : null;
  }
}
