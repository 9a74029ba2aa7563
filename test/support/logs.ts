// deno-lint-ignore-file no-explicit-any -- log records are whatever the service logged; the assertions check their shape
/**
 * LogTape configured in this test process as the Node runtime configures it (JSON lines,
 * request fields through an AsyncLocalStorage), the lines kept in memory instead of
 * stdout; and the JSON lines of a server process's output.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { configureLogging, type LogLevelName } from "../../src/logging/configure.ts";

export type LogRecordJson = Record<string, any>;

export interface CapturedLogs {
  /** Every JSON line logged since the capture started (or was cleared). */
  lines: string[];
  records(): LogRecordJson[];
  /** The access lines (one per request). */
  accessLines(): LogRecordJson[];
  clear(): void;
}

export function captureLogs(level: LogLevelName = "debug"): CapturedLogs {
  const lines: string[] = [];
  configureLogging({
    level,
    format: "json",
    write: (line) => lines.push(line),
    contextLocalStorage: new AsyncLocalStorage(),
  });
  const records = () => lines.map((line) => JSON.parse(line) as LogRecordJson);
  return {
    lines,
    records,
    accessLines: () => records().filter((r) => r.logger === "thread-artifacts.http" && r.msg === "request"),
    clear: () => void lines.splice(0),
  };
}

/** LogTape writing every record as an object to `console`, as on Workers. */
export function logToConsole(level: LogLevelName = "debug"): void {
  configureLogging({ level, format: "object", contextLocalStorage: new AsyncLocalStorage() });
}

/** The JSON lines of a process's output (its other lines, e.g. a runtime's own banner, skipped). */
export function jsonLines(output: string): LogRecordJson[] {
  const records: LogRecordJson[] = [];
  for (const line of output.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      records.push(JSON.parse(line) as LogRecordJson);
    } catch {
      // not a log line
    }
  }
  return records;
}
