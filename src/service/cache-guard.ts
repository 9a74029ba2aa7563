import { type ArtifactCache, CacheUnavailableError } from "../cache/port.ts";
import { FaultBurst, isReported } from "../logging/faults.ts";
import { logger } from "../logging/logger.ts";
import { describeError, ProblemError } from "../model/errors.ts";

const log = logger("cache");

export type CacheAttempt<T> = { ok: true; value: T } | { ok: false };

/**
 * libSQL's faults, once per burst (see FaultBurst): `cache <what> failed; using the
 * rollout` when one starts, `cache answers again` when it is over.
 */
export function cacheFaults(): FaultBurst {
  return new FaultBurst({
    store: "libsql",
    log,
    message: (what) => `cache ${what} failed; using the rollout`,
    recovered: "cache answers again",
  });
}

/**
 * Calls into the cache that may fail without failing the request: the cache is allowed
 * to be down, and every caller has a rollout path for when it is. A failure is reported
 * as `{ ok: false }` and logged once per burst (`faults`), not for every call while the
 * cache's breaker refuses them, nor for every request; a ProblemError is the client's
 * answer and passes through.
 */
export class CacheGuard {
  readonly #cache: ArtifactCache;
  readonly #faults: FaultBurst;

  constructor(cache: ArtifactCache, faults: FaultBurst = cacheFaults()) {
    this.#cache = cache;
    this.#faults = faults;
  }

  async try<T>(what: string, call: (cache: ArtifactCache) => Promise<T>): Promise<CacheAttempt<T>> {
    try {
      const value = await call(this.#cache);
      this.#faults.succeeded();
      return { ok: true, value };
    } catch (error) {
      if (error instanceof ProblemError) throw error;
      if (isReported(error)) {
        // A rollout fault met inside (a repair reads the rollout), logged by the rollout store.
        log.debug(`cache ${what} failed; using the rollout`, { operation: what, error: describeError(error) });
      } else {
        this.#faults.failed(what, error, { quiet: error instanceof CacheUnavailableError && error.reported });
      }
      return { ok: false };
    }
  }
}
