/**
 * How a runtime entry turns LogTape records into output, configured once per process
 * (Node, `deno task serve`) or isolate (Workers, the sequencer object):
 * - `json`: one JSON object per line (what log shippers read): `time`, `level`, `msg`,
 *   `requestId` and `traceId` when there are, then the record's own fields;
 * - `pretty`: the same as one line of text for people;
 * - `object`: the same fields as one object to `console` (Workers Logs indexes them).
 */
import { configureSync, type ContextLocalStorage, type LogLevel, type LogRecord, type Sink } from "@logtape/logtape";
import { describeError } from "../model/errors.ts";
import { activeTraceId } from "../model/tracing.ts";
import { LIFECYCLE, ROOT_CATEGORY, setAccessLineWriter, setImplicitContexts } from "./logger.ts";

/** `LOG_LEVEL`: the least severe level written. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevelName = (typeof LOG_LEVELS)[number];
/** `LOG_FORMAT`; unset, the runtime picks `json` unless stdout is a terminal. */
export const LOG_FORMATS = ["json", "pretty"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface LoggingOptions {
  level: LogLevelName;
  /** A format, or a line of one's own from the fields (the `rebuild` command's output). */
  format: LogFormat | "object" | ((fields: Record<string, unknown>) => string);
  /** Where `json` and `pretty` lines go, without their newline (default `console.log`). */
  write?: (line: string) => void;
  /** Where `object` records go (default the global console). */
  console?: Pick<Console, "debug" | "log" | "warn" | "error">;
  /**
   * An AsyncLocalStorage from the runtime (only `src/runtime` touches `node:*`): with it,
   * fields set for a request (its id) are on every line logged while serving it.
   */
  contextLocalStorage?: ContextLocalStorage<Record<string, unknown>>;
}

const TO_LOGTAPE: Record<LogLevelName, LogLevel> = { debug: "debug", info: "info", warn: "warning", error: "error" };
const LEVEL_NAME: Record<LogLevel, string> = {
  trace: "debug",
  debug: "debug",
  info: "info",
  warning: "warn",
  error: "error",
  fatal: "fatal",
};

/** (Re)configures every logger of the service; records below `level` cost a level check. */
export function configureLogging(options: LoggingOptions): void {
  configureSync({
    reset: true,
    sinks: { out: sinkFor(options) },
    loggers: [
      { category: [ROOT_CATEGORY], sinks: ["out"], lowestLevel: TO_LOGTAPE[options.level] },
      // Start (the listening line tools wait for) and shutdown: always, whatever LOG_LEVEL.
      {
        category: [ROOT_CATEGORY, LIFECYCLE],
        sinks: ["out"],
        parentSinks: "override",
        lowestLevel: options.level === "debug" ? "debug" : "info",
      },
      // LogTape's own diagnostics (a sink that threw), never its "configured" notice.
      { category: ["logtape", "meta"], sinks: ["out"], lowestLevel: "warning" },
    ],
    ...(options.contextLocalStorage ? { contextLocalStorage: options.contextLocalStorage } : {}),
  });
  setImplicitContexts(options.contextLocalStorage !== undefined);
  // The access line, one per request, skips the record pipeline where it can: JSON lines
  // at info. Same fields, same order, same sink (see writeAccessLine).
  const infoOn = options.level === "debug" || options.level === "info";
  setAccessLineWriter(options.format === "json" && infoOn ? (options.write ?? ((line) => console.log(line))) : null);
}

function sinkFor(options: LoggingOptions): Sink {
  if (options.format === "object") {
    const out = options.console ?? globalThis.console;
    return (record) => {
      const fields = fieldsOf(record);
      const level = record.level;
      if (level === "error" || level === "fatal") out.error(fields);
      else if (level === "warning") out.warn(fields);
      else if (level === "info") out.log(fields);
      else out.debug(fields);
    };
  }
  const write = options.write ?? ((line: string) => console.log(line));
  const format = typeof options.format === "function"
    ? options.format
    : options.format === "pretty"
    ? prettyLine
    : jsonLine;
  return (record) => write(format(fieldsOf(record)));
}

/**
 * A record's fields in their order: `time`, `level`, `msg`, `requestId`, `traceId`, then
 * the rest, `logger` (the category) last. The trace id is the active span's, read here:
 * sinks run inside the logging call, so it is the span of the code that logged.
 */
export function fieldsOf(record: LogRecord): Record<string, unknown> {
  const properties = record.properties;
  const fields: Record<string, unknown> = {
    time: new Date(record.timestamp).toISOString(),
    level: LEVEL_NAME[record.level],
    msg: messageOf(record.message),
  };
  if (properties.requestId !== undefined) fields.requestId = properties.requestId;
  const traceId = properties.traceId ?? activeTraceId();
  if (traceId !== undefined) fields.traceId = traceId;
  for (const [key, value] of Object.entries(properties)) {
    if (!(key in fields) && value !== undefined) fields[key] = plain(value);
  }
  fields.logger = record.category.join(".");
  return fields;
}

/** The message with its placeholders filled: strings as they are, anything else as JSON. */
function messageOf(parts: readonly unknown[]): string {
  let text = "";
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    text += i % 2 === 0 || typeof part === "string" ? String(part) : stringify(plain(part));
  }
  return text;
}

/** Errors as one line (describeError: never a stack), bigints as strings; the rest as it is. */
function plain(value: unknown): unknown {
  if (value instanceof Error) return describeError(value);
  if (typeof value === "bigint") return String(value);
  return value;
}

function stringify(value: unknown): string {
  try {
    return JSON.stringify(value, (_key, v: unknown) => plain(v)) ?? String(value);
  } catch {
    return String(value);
  }
}

export function jsonLine(fields: Record<string, unknown>): string {
  // Plain JSON first (fieldsOf made the top-level values plain); the replacer only for
  // what JSON refuses (a bigint deeper down) or would lose (an Error deeper down).
  try {
    return JSON.stringify(fields);
  } catch {
    return stringify(fields);
  }
}

/** `2026-01-02T03:04:05.678Z INFO  request method=GET route=/v1/threads status=200 ...` */
export function prettyLine(fields: Record<string, unknown>): string {
  const { time, level, msg, logger: _category, ...rest } = fields;
  let line = `${String(time)} ${String(level).toUpperCase().padEnd(5)} ${String(msg)}`;
  for (const [key, value] of Object.entries(rest)) {
    const text = typeof value === "string"
      ? (/[\s"=]/.test(value) || value === "" ? JSON.stringify(value) : value)
      : stringify(value);
    line += ` ${key}=${text}`;
  }
  return line;
}
