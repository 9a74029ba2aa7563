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

/** The fields of a request's access line (see http/access-log.ts). */
export interface AccessLine {
  requestId: string;
  traceId: string | undefined;
  method: string;
  route: string | null;
  status: number;
  durationMs: number;
  tenant: string | undefined;
}

let accessLineWriter: ((line: string) => void) | null = null;

/** Set by `configureLogging`: where JSON access lines go, or null where they take the logger's path. */
export function setAccessLineWriter(write: ((line: string) => void) | null): void {
  accessLineWriter = write;
}

const json = JSON.stringify;

/**
 * Writes a request's access line as one preformatted JSON line when JSON lines at info are
 * configured, exactly as the logger would have written it (the same fields in the same
 * order: time, level, msg, requestId, traceId, the request's fields, logger), and returns
 * true; false where the line must go through the logger. Once per request, the record
 * pipeline (a record, its properties, the implicit context) cost more CPU than the rest
 * of a write's observability together (measured in `npm run bench -- --only=obs`).
 */
export function writeAccessLine(line: AccessLine): boolean {
  const write = accessLineWriter;
  if (!write) return false;
  write(
    `{"time":${json(new Date().toISOString())},"level":"info","msg":"request","requestId":${json(line.requestId)}${
      line.traceId === undefined ? "" : `,"traceId":${json(line.traceId)}`
    },"method":${json(line.method)},"route":${
      line.route === null ? "null" : json(line.route)
    },"status":${line.status},"durationMs":${line.durationMs}${
      line.tenant === undefined ? "" : `,"tenant":${json(line.tenant)}`
    },"logger":"${ROOT_CATEGORY}.http"}`,
  );
  return true;
}
