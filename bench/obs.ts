/**
 * What operating the service costs a write: create throughput (64 threads, 16
 * connections) of our server with everything off (METRICS=off, LOG_LEVEL=warn: no
 * access lines), with metrics and logs at their defaults, and with the OTLP exporter on
 * (every span sampled, and 10% sampled) to a sink in this process; and, judged by no goal,
 * the exporter registered with nothing sampled, which tells a cost per request from one per
 * span.
 *
 * All the variants' servers run at once, and the load moves between them in short blocks, in a
 * fresh random order each block: each block's ratio (a variant's req/s over its
 * neighbour's: defaults over off, each OTLP variant over the defaults) compares runs
 * seconds apart, on the same disk and machine, so the drift that spread fresh servers run
 * minutes apart by ±20% (the disk slowing as files pile up, the machine's other tenants)
 * lands on every variant alike. The servers are started anew each generation, so the
 * luck of one process (its heap layout, what the JIT made of it: ~3% between identical
 * servers) averages out over generations; each goal is judged on the geometric mean of
 * the ratios of every block of every generation, and the spread of the generations'
 * own means is reported with it.
 *
 * On a machine with two or more CPUs the servers run on CPU 0 and the load generator,
 * the bench and the OTLP sink share the rest: a server under load is CPU-bound, so a
 * variant's cost shows in full in its throughput (a server not under load is idle).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { HttpResult, HttpRun } from "./load/http.ts";
import { availableParallelism } from "node:os";
import { pinToCpus, type ServerProcess } from "./lib/process.ts";

export interface ObsParams {
  /** Sets of servers (one per variant), each started anew. */
  generations: number;
  /** Blocks per generation: each runs every variant once, in a random order. */
  blocks: number;
  /** Seconds of load per variant per block. */
  blockS: number;
  /** Seconds of load each new server gets before its first block (not measured). */
  warmupS: number;
  connections: number;
  threads: number;
  body: string;
  /**
   * `--obs-against=<rev>`: instead of the goals' variants, every span on the code at
   * `rev` (a worktree; `entry` is its server) against every span on this checkout, both
   * paired with the defaults: what a change to the tracing path costs or saves, judged
   * in one run.
   */
  against?: { rev: string; entry: string };
}

export interface ObsRow {
  variant: string;
  /** req/s of each block, generation after generation. */
  blocks: number[];
  median: number;
  /** Median server CPU ms per request over the blocks. */
  cpuMs: number;
  /**
   * Geometric mean over every block of this variant's req/s over the variant it is judged
   * against in the same block (everything off for the defaults, the defaults for the OTLP
   * ones): the figure the goals judge.
   */
  pairedRatio?: number;
  /** The same, per generation (one set of server processes each). */
  generationRatios?: number[];
  /** Geometric mean over every block of this variant's server CPU per create over its neighbour's: what it adds to a create. */
  cpuRatio?: number;
  /** Whether the servers ran on their own CPU. */
  pinned: boolean;
}

export interface ObsDeps {
  /** One of our servers; `entry` (default: this checkout's) is the script it runs. */
  withOurs: <T>(
    name: string,
    env: Record<string, string>,
    body: (server: ServerProcess) => Promise<T>,
    entry?: string,
  ) => Promise<T>;
  measure: (server: ServerProcess, run: HttpRun) => Promise<HttpResult>;
  log: (message: string) => void;
  /** The load generator's pid, pinned away from the server's CPU. */
  loadPid: number;
}

/** An OTLP/HTTP receiver that accepts every export (200) and counts what it got. */
async function startSink(): Promise<{ url: string; requests: () => number; close: () => Promise<void> }> {
  let requests = 0;
  const server: Server = createServer((request, response) => {
    request.resume();
    request.on("end", () => {
      requests++;
      response.writeHead(200, { "content-type": "application/x-protobuf" }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** The middle value; of an even count, the mean of the two middle ones. */
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? sorted[middle] as number
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};

const geometricMean = (values: number[]) =>
  Math.exp(values.reduce((sum, value) => sum + Math.log(value), 0) / values.length);

/** Per generation and block, `own`'s value over `base`'s in the same block. */
const pairedRatios = (own: number[][], base: number[][]) =>
  own.map((blocks, generation) => blocks.map((value, block) => value / (base[generation]?.[block] as number)));

/** `items` in a random order (Fisher–Yates). */
function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

interface Variant {
  variant: string;
  env: Record<string, string>;
  /** The server's script, when it is not this checkout's. */
  entry?: string;
}

/** Runs `body` with one server per variant up at once, all stopped after it. */
async function withServers<T>(
  deps: ObsDeps,
  generation: number,
  variants: readonly Variant[],
  body: (servers: ServerProcess[]) => Promise<T>,
  started: ServerProcess[] = [],
): Promise<T> {
  const index = started.length;
  const next = variants[index];
  if (!next) return body(started);
  return deps.withOurs(
    `obs-${generation}-${index}`,
    next.env,
    (server) => withServers(deps, generation, variants, body, [...started, server]),
    next.entry,
  );
}

export async function benchObservability(params: ObsParams, deps: ObsDeps): Promise<ObsRow[]> {
  const cpus = availableParallelism();
  const everyCpu = `0-${cpus - 1}`;
  const pinned = cpus >= 2 && pinToCpus(process.pid, `1-${cpus - 1}`) && pinToCpus(deps.loadPid, `1-${cpus - 1}`);
  deps.log(pinned ? "obs: servers on CPU 0, load and bench on the others" : "obs: unpinned (one CPU or no taskset)");
  const sink = await startSink();
  try {
    const otlp = { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf" };
    const against = params.against;
    const variants: Variant[] = against
      ? [
        { variant: "metrics and logs at their defaults", env: {} },
        { variant: `defaults + OTLP exporter, every span, at ${against.rev}`, env: otlp, entry: against.entry },
        { variant: "defaults + OTLP exporter, every span, this checkout", env: otlp },
      ]
      : [
        { variant: "everything off (METRICS=off, LOG_LEVEL=warn)", env: { METRICS: "off", LOG_LEVEL: "warn" } },
        { variant: "metrics and logs at their defaults", env: {} },
        { variant: "defaults + OTLP exporter, every span", env: otlp },
        {
          variant: "defaults + OTLP exporter, 10% of traces",
          env: { ...otlp, OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.1" },
        },
        // Not a goal: what tracing costs registered with nothing sampled (no span recorded or
        // exported), to tell a cost per request from a cost per span.
        {
          variant: "defaults + OTLP exporter, nothing sampled (always_off)",
          env: { ...otlp, OTEL_TRACES_SAMPLER: "always_off" },
        },
      ];
    /** Per variant, per generation, per block. */
    const rps = variants.map(() => [] as number[][]);
    const cpu = variants.map(() => [] as number[][]);
    const run = (generation: number, durationS: number): HttpRun => ({
      name: "obs",
      method: "POST",
      path: "/v1/threads/{thread}/artifacts",
      threads: params.threads,
      // Each server has its own data folder: the same names on each.
      threadPrefix: `obs-${generation}-`,
      body: params.body,
      connections: params.connections,
      durationS,
      warmupS: 0,
    });
    for (let generation = 0; generation < params.generations; generation++) {
      await withServers(deps, generation, variants, async (servers) => {
        for (const server of servers) {
          if (pinned && !pinToCpus(server.pid, "0")) throw new Error("obs: could not pin a server to CPU 0");
        }
        deps.log(
          `obs: generation ${generation + 1}: ${servers.length} servers up, warming each for ${params.warmupS} s`,
        );
        for (const server of servers) await deps.measure(server, run(generation, params.warmupS));
        for (const list of [...rps, ...cpu]) list.push([]);
        for (let block = 0; block < params.blocks; block++) {
          for (const index of shuffled([...variants.keys()])) {
            const result = await deps.measure(servers[index] as ServerProcess, run(generation, params.blockS));
            (rps[index]?.[generation] as number[]).push(result.rps);
            (cpu[index]?.[generation] as number[]).push(result.cpuMsPerRequest ?? Number.NaN);
          }
        }
      });
    }
    deps.log(`obs: the OTLP sink took ${sink.requests()} exports`);
    // Each variant is judged against its neighbour: off ← defaults ← each OTLP variant.
    const judgedAgainst = against ? [undefined, 0, 0] : [undefined, 0, 1, 1, 1];
    return variants.map(({ variant }, index) => {
      const own = rps[index] as number[][];
      const ownCpu = cpu[index] as number[][];
      const base = judgedAgainst[index];
      const blocks = own.flat();
      const cpuMs = median(ownCpu.flat());
      if (base === undefined) return { variant, blocks, median: median(blocks), cpuMs, pinned };
      const ratios = pairedRatios(own, rps[base] as number[][]);
      return {
        variant,
        blocks,
        median: median(blocks),
        cpuMs,
        pairedRatio: geometricMean(ratios.flat()),
        generationRatios: ratios.map(geometricMean),
        cpuRatio: geometricMean(pairedRatios(ownCpu, cpu[base] as number[][]).flat()),
        pinned,
      };
    });
  } finally {
    await sink.close();
    if (pinned) {
      pinToCpus(process.pid, everyCpu);
      pinToCpus(deps.loadPid, everyCpu);
    }
  }
}
