import { type ArtifactCache, CacheUnavailableError } from "../cache/port.ts";
import { describeError, ProblemError } from "../model/errors.ts";

export interface ServiceLogger {
  warn(message: string, fields?: Record<string, unknown>): void;
}

export type CacheAttempt<T> = { ok: true; value: T } | { ok: false };

/**
 * Calls into the cache that may fail without failing the request: the cache is allowed
 * to be down, and every caller has a rollout path for when it is. A failure is logged
 * once (not again while the cache's breaker refuses calls) and reported as `{ ok: false }`;
 * a ProblemError is the client's answer and passes through.
 */
export class CacheGuard {
  readonly #cache: ArtifactCache;
  readonly #logger: ServiceLogger;

  constructor(cache: ArtifactCache, logger: ServiceLogger) {
    this.#cache = cache;
    this.#logger = logger;
  }

  async try<T>(what: string, call: (cache: ArtifactCache) => Promise<T>): Promise<CacheAttempt<T>> {
    try {
      return { ok: true, value: await call(this.#cache) };
    } catch (error) {
      if (error instanceof ProblemError) throw error;
      if (!(error instanceof CacheUnavailableError && error.reported)) {
        this.#logger.warn(`cache ${what} failed; using the rollout`, { error: describeError(error) });
      }
      return { ok: false };
    }
  }
}
