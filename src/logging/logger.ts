/**
 * The service's loggers: LogTape (`@logtape/logtape`), which runs unchanged on Node,
 * Deno and workerd (docs/decisions.md#logs). Shared code only asks for a logger and logs
 * to it; what becomes of a record (JSON lines, text for people, objects to `console`) is
 * configured once per runtime entry (`configureLogging` in ./configure.ts). Unconfigured
 * (a library user, a test that does not care), every record is dropped.
 */
import { getLogger, type Logger, withContext } from "@logtape/logtape";

export type { Logger };

/** Every category of this service starts with it. */
export const ROOT_CATEGORY = "thread-artifacts";
/**
 * The process's start and shutdown lines (`logger(LIFECYCLE)`): a few per process life,
 * written at `info` whatever `LOG_LEVEL` says, since tools wait for the listening line.
 */
export const LIFECYCLE = "lifecycle";

/** The logger of one part of the service: `logger("http")` has the category `["thread-artifacts", "http"]`. */
export function logger(...category: string[]): Logger {
  return getLogger([ROOT_CATEGORY, ...category]);
}

let implicitContexts = false;

/** Set by `configureLogging`: whether the runtime gave LogTape a context-local storage. */
export function setImplicitContexts(available: boolean): void {
  implicitContexts = available;
}

/**
 * Runs `run` with `fields` on every record logged inside it, its async continuations
 * included (the request id on every line of a request), when the runtime gave LogTape an
 * AsyncLocalStorage; without one it just runs `run`.
 */
export function withLogContext<T>(fields: Record<string, unknown>, run: () => T): T {
  return implicitContexts ? withContext(fields, run) : run();
}
