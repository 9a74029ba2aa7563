/**
 * Store faults, logged once per burst: a store that is down fails every request that
 * touches it, and a log line per request would bury everything else (and cost as much
 * as the requests). The first failure of a burst is logged with the store, the
 * operation and the error; the failures after it are counted; the first success once the
 * store has been quiet for a while ends the burst with one line saying how many failed.
 * An error logged so is marked, so whoever meets it again up the stack (the request that
 * answers 503) logs it at debug only.
 */
import { describeError } from "../model/errors.ts";
import type { Logger } from "./logger.ts";

const reported = new WeakSet<object>();

/** `error` was logged where it happened: callers up the stack need not log it again. */
export function markReported(error: unknown): void {
  if (typeof error === "object" && error !== null) reported.add(error);
}

/** Whether `error`, or one of its causes, was logged where it happened. */
export function isReported(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === "object" && current !== null; depth++) {
    if (reported.has(current)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

/** A warning, or a debug line when the error was already logged where it happened (a store fault). */
export function warnUnlessReported(
  log: Logger,
  message: string,
  fields: Record<string, unknown>,
  error: unknown,
): void {
  const all = { ...fields, error: describeError(error) };
  if (isReported(error)) log.debug(message, all);
  else log.warn(message, all);
}

export interface FaultBurstOptions {
  /** The store's name in the log (`blob`, `libsql`), as the metrics label it. */
  store: string;
  log: Logger;
  /** The first failure's message (default: `<store> store call failed; …`). */
  message?: (operation: string) => string;
  /** The message when a burst ends (default: `<store> store answers again`). */
  recovered?: string;
  /** A burst ends once no call failed for this long (ms; default 5 s). */
  quietMs?: number;
  now?: () => number;
}

/**
 * Counts one store's failures into bursts and logs each burst twice: when it starts and
 * when it ends. One per store per process (Node, Deno), or per isolate on Workers, where
 * everything else is wired per request.
 */
export class FaultBurst {
  readonly #store: string;
  readonly #log: Logger;
  readonly #message: (operation: string) => string;
  readonly #recovered: string;
  readonly #quietMs: number;
  readonly #now: () => number;
  /** Failures of the open burst (0: none open). */
  #failures = 0;
  #lastFailure = 0;

  constructor(options: FaultBurstOptions) {
    this.#store = options.store;
    this.#log = options.log;
    this.#message = options.message ??
      (() => `${options.store} store call failed; further failures are counted, not logged, until it recovers`);
    this.#recovered = options.recovered ?? `${options.store} store answers again`;
    this.#quietMs = options.quietMs ?? 5000;
    this.#now = options.now ?? (() => Date.now());
  }

  /**
   * A failed call. `quiet`: a failure that says nothing new (a breaker refusing calls after
   * the failure that opened it): counted in an open burst, never the start of one.
   */
  failed(operation: string, error: unknown, { quiet = false } = {}): void {
    const now = this.#now();
    // A failure after a quiet spell starts a new burst, even with no success in between.
    const starts = this.#failures === 0 || now - this.#lastFailure >= this.#quietMs;
    if (starts && quiet) return;
    if (starts) {
      this.#failures = 0;
      this.#log.warn(this.#message(operation), { store: this.#store, operation, error: describeError(error) });
    }
    this.#failures++;
    this.#lastFailure = now;
    markReported(error);
  }

  succeeded(): void {
    if (this.#failures === 0 || this.#now() - this.#lastFailure < this.#quietMs) return;
    this.#log.info(this.#recovered, { store: this.#store, failures: this.#failures });
    this.#failures = 0;
  }
}
