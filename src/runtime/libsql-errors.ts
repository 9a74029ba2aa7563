/**
 * Errors as @libsql/client reports them, which is what the cache tells SQL errors (bugs:
 * surfaced) from an unusable database (down: fall back) by: `code` is SQLite's primary
 * code ("SQLITE_CONSTRAINT" for "SQLITE_CONSTRAINT_PRIMARYKEY"), `extendedCode` the
 * binding's own. Shared by the file client's two connections (libsql-file.ts, on this
 * thread; libsql-writer.ts, from its worker). Null when `code` is no SQLite code.
 */
export function libsqlError(message: string, code: unknown, cause?: unknown): Error | null {
  if (typeof code !== "string" || !code.startsWith("SQLITE_")) return null;
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), {
    name: "LibsqlError",
    code: code.split("_").slice(0, 2).join("_"),
    extendedCode: code,
  });
}
