import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { Miniflare } from "miniflare";
import { compatibilityDate, sharedOptions, type WorkerdEnv } from "./workerd.ts";
import { SUBREQUEST_COUNTER_MODULE } from "./worker-subrequests.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export interface WorkerBundle {
  /** The bundle's one module, as a deploy uploads it. */
  code: string;
  bytes: number;
  gzipBytes: number;
}

let bundled: Promise<WorkerBundle> | undefined;

/** `wrangler deploy --dry-run --outdir`: the exact bundle a deploy would upload (built once per test process). */
export function buildWorkerBundle(): Promise<WorkerBundle> {
  bundled ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), "artifacts-worker-bundle-"));
    const child = spawn(join(ROOT, "node_modules", ".bin", "wrangler"), ["deploy", "--dry-run", "--outdir", dir], {
      cwd: ROOT,
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    if (code !== 0) throw new Error(`wrangler deploy --dry-run failed (${code}):\n${output}`);
    const main = readdirSync(dir).find((name) => name.endsWith(".js"));
    if (!main) throw new Error(`no bundle in ${dir}:\n${output}`);
    const bytes = readFileSync(join(dir, main));
    // Kept in memory: the folder goes at once (a test process may end without an exit hook).
    rmSync(dir, { recursive: true, force: true });
    return { code: bytes.toString("utf8"), bytes: bytes.length, gzipBytes: gzipSync(bytes).length };
  })();
  return bundled;
}

export interface WorkerServer {
  url: string;
  mf: Miniflare;
  /** Where its R2 and Durable Object state lives (a Worker started on it again finds them). */
  persist: string;
  /**
   * Disposes of workerd; removes `persist` when startWorker made it, unless `keepState` (a
   * restart on it follows, whose starter then owns it). A `persist` passed in stays.
   */
  stop: (options?: { keepState?: boolean }) => Promise<void>;
}

export interface WorkerOptions {
  /** Bind the `SEQUENCER` Durable Object (default true); without it the Worker writes on its own. */
  sequencer?: boolean;
  /** Persistence folder for R2 and Durable Objects (default: a fresh one); pass one to restart on the same state. */
  persist?: string;
  /** Listen here (default: any free port); a restart on the same port keeps clients' URLs. */
  port?: number;
  /** Bind an Analytics Engine dataset as `METRICS` (default false: the Worker runs without it). */
  analyticsEngine?: boolean;
  /** Bind the `WEBHOOKS` Durable Object (default true): the webhook routes and their delivery; without it, 404. */
  webhooks?: boolean;
  /** Bind the `TENANT_LIMITER` Durable Object (default true): exact per-tenant limits; without it, per isolate. */
  tenantLimiter?: boolean;
  /**
   * Bind Workers Rate Limiting bindings (default: none): `writes` as `WRITE_LIMITER`,
   * `reads` as `READ_LIMITER`, each `limit` requests per `period` seconds (10 or 60) per key,
   * in fixed windows aligned to the clock (Miniflare's local limiter).
   */
  rateLimits?: Partial<Record<"writes" | "reads", { limit: number; period: 10 | 60 }>>;
  /**
   * Run the bundle under the subrequest counter (test/support/worker-subrequests.ts): each
   * request sent with `x-count-id` has its subrequests recorded (default false).
   */
  countSubrequests?: boolean;
}

/** The Worker's name in workerd (its Durable Object binding points at it). */
const WORKER_NAME = "thread-artifacts";

/**
 * The Worker bundle in workerd (Miniflare 5), with local R2 as `ROLLOUTS`, the
 * `ThreadSequencer` Durable Object (SQLite-backed, as wrangler.toml declares it) as
 * `SEQUENCER`, the `TenantLimiter` one as `TENANT_LIMITER`, the `WebhookDeliverer` one as
 * `WEBHOOKS`, optionally the Rate Limiting
 * bindings, and the given string vars, served on a loopback port.
 */
export async function startWorker(vars: Record<string, string>, options: WorkerOptions = {}): Promise<WorkerServer> {
  const bundle = await buildWorkerBundle();
  const persist = options.persist ?? mkdtempSync(join(tmpdir(), "artifacts-worker-state-"));
  const env: WorkerdEnv = { ROLLOUTS: { type: "r2", name: "ROLLOUTS" } };
  // Access lines at info would fill the test output (workerd's console goes to ours): warnings and errors only, unless asked.
  for (const [name, value] of Object.entries({ LOG_LEVEL: "warn", ...vars })) env[name] = { type: "text", value };
  const sequencer = options.sequencer !== false;
  if (sequencer) env.SEQUENCER = { type: "durable-object", worker: WORKER_NAME, exportName: "ThreadSequencer" };
  const tenantLimiter = options.tenantLimiter !== false;
  if (tenantLimiter) {
    env.TENANT_LIMITER = { type: "durable-object", worker: WORKER_NAME, exportName: "TenantLimiter" };
  }
  const webhooks = options.webhooks !== false;
  if (webhooks) env.WEBHOOKS = { type: "durable-object", worker: WORKER_NAME, exportName: "WebhookDeliverer" };
  // Each binding its own namespace, as each needs its own namespace_id in wrangler.toml.
  const { writes, reads } = options.rateLimits ?? {};
  if (writes) env.WRITE_LIMITER = { type: "rate-limit", namespace: "1001", simple: writes };
  if (reads) env.READ_LIMITER = { type: "rate-limit", namespace: "1002", simple: reads };
  // Locally a dataset accepts data points and keeps none.
  if (options.analyticsEngine) env.METRICS = { type: "analytics-engine-dataset", name: "thread_artifacts" };
  const mf = new Miniflare({
    ...sharedOptions(options.port),
    // R2 and Durable Objects persist under it, one folder per plugin.
    resourcePersistencePath: persist,
    workers: [{
      config: {
        name: WORKER_NAME,
        compatibilityDate: compatibilityDate(),
        // The bundle as a deploy uploads it, one module (nothing is discovered from imports).
        manifest: {
          mainModule: options.countSubrequests ? "count-subrequests.js" : "app.js",
          modules: {
            "app.js": { type: "esm", contents: bundle.code },
            ...(options.countSubrequests
              ? { "count-subrequests.js": { type: "esm", contents: SUBREQUEST_COUNTER_MODULE } }
              : {}),
          },
        },
        env,
        exports: {
          ...(sequencer ? { ThreadSequencer: { type: "durable-object", storage: "sqlite" } } : {}),
          ...(tenantLimiter ? { TenantLimiter: { type: "durable-object", storage: "sqlite" } } : {}),
          ...(webhooks ? { WebhookDeliverer: { type: "durable-object", storage: "sqlite" } } : {}),
        },
      },
    }],
  });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  return {
    url,
    mf,
    persist,
    stop: async ({ keepState = false } = {}) => {
      await mf.dispose();
      if (options.persist === undefined && !keepState) rmSync(persist, { recursive: true, force: true });
    },
  };
}
