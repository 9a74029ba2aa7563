/**
 * `npm run rebuild [-- --tenant <t> [--thread <id>]] [--concurrency <n>]`: rebuilds
 * the libSQL cache from the rollout, configured from the same environment as the
 * server (DATA_DIR, LIBSQL_URL, LIBSQL_AUTH_TOKEN, BLOB_STORE, ...). Safe to run while
 * servers run, safe to run twice, safe to interrupt: the next run finishes the job.
 *
 * Output: on a terminal, one progress line updated in place; otherwise one line per
 * thread and a summary line. Exit code 0 on success, 1 if the cache or the rollout is
 * unreachable or a thread failed, 2 for bad arguments or configuration.
 */
import { pathToFileURL } from "node:url";
import { LibsqlCache } from "../cache/libsql.ts";
import { TENANT_PATTERN, THREAD_ID_PATTERN } from "../model/ids.ts";
import { Rollout } from "../rollout/rollout.ts";
import { ArtifactService } from "../service/artifact-service.ts";
import { RebuildAbortedError, rebuildCache, type RebuildEvent, type RebuildScope } from "../service/rebuild.ts";
import { type Config, ConfigError, type Env, loadConfig } from "./config.ts";
import { blobStoreFor, libsqlConnector } from "./server-stores.ts";
import { configureLogging, jsonLine } from "../logging/configure.ts";

export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
}

const USAGE = `usage: npm run rebuild -- [--tenant <tenant> [--thread <threadId>]] [--concurrency <n>]
Rebuilds the libSQL cache from the rollout: every thread of every tenant, one tenant, or one thread.
Configured from the server's environment (DATA_DIR, LIBSQL_URL, LIBSQL_AUTH_TOKEN, BLOB_STORE, ...).`;

class UsageError extends Error {}

interface Args {
  scope: RebuildScope;
  concurrency: number;
  help: boolean;
}

export function parseArgs(argv: readonly string[]): Args {
  const args: Args = { scope: {}, concurrency: 4, help: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf("=");
    const name = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg;
    const value = () => {
      if (eq > 0 && arg.startsWith("--")) return arg.slice(eq + 1);
      const next = argv[++i];
      if (next === undefined) throw new UsageError(`${name} needs a value`);
      return next;
    };
    switch (name) {
      case "--tenant": {
        const tenant = value();
        if (!TENANT_PATTERN.test(tenant)) {
          throw new UsageError(
            `--tenant must be 1-128 chars of [A-Za-z0-9._:-], starting alphanumeric (got ${JSON.stringify(tenant)})`,
          );
        }
        args.scope.tenant = tenant;
        break;
      }
      case "--thread": {
        const threadId = value();
        if (!THREAD_ID_PATTERN.test(threadId)) {
          throw new UsageError(
            `--thread must be a threadId: 1-128 chars of [A-Za-z0-9._:-], starting alphanumeric (got ${
              JSON.stringify(threadId)
            })`,
          );
        }
        args.scope.threadId = threadId;
        break;
      }
      case "--concurrency": {
        const raw = value();
        if (!/^\d{1,3}$/.test(raw) || Number(raw) < 1) {
          throw new UsageError(`--concurrency must be an integer from 1 to 999 (got ${JSON.stringify(raw)})`);
        }
        args.concurrency = Number(raw);
        break;
      }
      case "-h":
      case "--help":
        args.help = true;
        break;
      default:
        throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  if (args.scope.threadId !== undefined && args.scope.tenant === undefined) {
    throw new UsageError("--thread needs --tenant");
  }
  return args;
}

/** Runs the command; resolves to the exit code. */
export async function runRebuild(
  argv: readonly string[],
  env: Env,
  io: { stdout: Output; stderr: Output },
): Promise<number> {
  let args: Args;
  let config: Config;
  try {
    args = parseArgs(argv);
    if (args.help) {
      io.stdout.write(`${USAGE}\n`);
      return 0;
    }
    config = loadConfig(env);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`rebuild: ${error.message}\n${USAGE}\n`);
      return 2;
    }
    if (error instanceof ConfigError) {
      io.stderr.write(`rebuild: configuration error: ${error.message}\n`);
      return 2;
    }
    throw error;
  }

  let cache: LibsqlCache | undefined;
  const report = io.stdout.isTTY ? new ProgressLine(io.stdout) : new PlainLines(io.stdout);
  const started = performance.now();
  try {
    cache = new LibsqlCache({ connect: libsqlConnector(config), local: config.libsqlUrl.startsWith("file:") });
    const rollout = new Rollout(blobStoreFor(config, env));
    const service = new ArtifactService({
      rollout,
      cache,
      limits: { maxPayloadBytes: config.maxPayloadBytes, maxArtifactsPerThread: config.maxArtifactsPerThread },
      deleteRetentionMs: config.deleteRetentionMs,
    });
    const summary = await rebuildCache({ service, rollout, cache }, {
      scope: args.scope,
      concurrency: args.concurrency,
      onEvent: (event) => report.event(event),
    });
    report.end();
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    io.stdout.write(
      `rebuild: ${
        plural(summary.threads, "thread")
      } (${summary.repaired} rebuilt, ${summary.atHead} already at head, ${summary.failed.length} failed), ` +
        `${plural(summary.applied, "patch", "patches")} applied, ${
          summary.swept > 0 ? `${plural(summary.swept, "object")} of deleted threads removed, ` : ""
        }${seconds} s\n`,
    );
    if (summary.failed.length > 0) {
      io.stderr.write(
        `rebuild: ${
          plural(summary.failed.length, "thread")
        } failed; fix the cause and run it again (threads at head are skipped cheaply)\n`,
      );
      return 1;
    }
    return 0;
  } catch (error) {
    report.end();
    if (error instanceof RebuildAbortedError) {
      const where = error.store === "cache"
        ? `LIBSQL_URL=${redact(config.libsqlUrl)}`
        : `BLOB_STORE=${blobStoreName(config)}`;
      io.stderr.write(`rebuild: ${error.message} [${where}]; nothing was lost, run it again once it answers\n`);
      return 1;
    }
    if (error instanceof ConfigError) {
      io.stderr.write(`rebuild: configuration error: ${error.message}\n`);
      return 2;
    }
    throw error;
  } finally {
    cache?.close();
  }
}

/** Non-terminal output: one line per thread as it finishes. */
class PlainLines {
  readonly #out: Output;
  constructor(out: Output) {
    this.#out = out;
  }
  event(event: RebuildEvent): void {
    if (event.kind === "thread") {
      const what = event.applied > 0
        ? `rebuilt ${event.cachedSeq} -> ${event.seq} (${plural(event.applied, "patch", "patches")})`
        : `already at head (seq ${event.seq})`;
      this.#out.write(`${event.tenant}/${event.threadId}: ${what}\n`);
    } else if (event.kind === "failed") {
      this.#out.write(`${event.tenant}/${event.threadId}: FAILED: ${event.error}\n`);
    }
  }
  end(): void {}
}

/** Terminal output: a single line rewritten in place (\r), failures printed above it. */
class ProgressLine {
  readonly #out: Output;
  #line = "";
  #drawnAt = 0;
  constructor(out: Output) {
    this.#out = out;
  }
  event(event: RebuildEvent): void {
    if (event.kind === "start") {
      this.#draw(`rebuild: 0/${event.total} threads, 0 patches applied`);
      return;
    }
    if (event.kind === "failed") {
      this.#out.write(`\r\x1b[K${event.tenant}/${event.threadId}: FAILED: ${event.error}\n`);
      this.#line = "";
    }
    const line = `rebuild: ${event.done}/${event.total} threads, ${event.appliedTotal} patches applied`;
    // Redraw at most every 50 ms (a terminal cannot show more), and always the last one.
    if (event.done === event.total || Date.now() - this.#drawnAt >= 50) this.#draw(line);
  }
  end(): void {
    if (this.#line) this.#out.write("\n");
    this.#line = "";
  }
  #draw(line: string): void {
    this.#out.write(`\r\x1b[K${line}`);
    this.#line = line;
    this.#drawnAt = Date.now();
  }
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** A URL without credentials or query (tokens may travel there). */
function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.protocol === "file:") return url.split("?")[0] as string;
    return `${parsed.protocol}//${parsed.host}${parsed.pathname === "/" ? "" : parsed.pathname}`;
  } catch {
    return "(unparsable URL)";
  }
}

function blobStoreName(config: Config): string {
  const blob = config.blobStore;
  return blob.kind === "fs" ? `fs:${blob.dir}` : blob.kind === "s3" ? `s3://${blob.bucket}` : "memory:";
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  // The service's warnings (a compaction or sweep that failed) as the command's own lines.
  configureLogging({
    level: "warn",
    format: ({ msg, time: _time, level: _level, logger: _logger, ...fields }) =>
      `rebuild: ${String(msg)} ${jsonLine(fields)}`,
    write: (line) => process.stderr.write(`${line}\n`),
  });
  process.once("SIGINT", () => {
    process.stderr.write(
      "\nrebuild: interrupted; run it again to finish (threads already at head are skipped cheaply)\n",
    );
    process.exit(130);
  });
  runRebuild(process.argv.slice(2), process.env, { stdout: process.stdout, stderr: process.stderr }).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(
        `rebuild: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
      process.exitCode = 1;
    },
  );
}
