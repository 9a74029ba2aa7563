/**
 * What operating the service costs a write: create throughput (64 threads, 16
 * connections) of our server with everything off (METRICS=off, LOG_LEVEL=warn: no
 * access lines), with metrics and logs at their defaults, and with the OTLP exporter on
 * (every span sampled, and 10% sampled) to a sink in this process. Variants alternate
 * round by round, each on a fresh server and data folder, in reverse order every other
 * round, so drift in the machine (the disk slows as the runs' files pile up) touches
 * them all alike; the median round of each is reported, and the median of each round's
 * own ratio (a variant against its neighbour in the same round), which cancels the drift
 * between rounds.
 *
 * On a machine with two or more CPUs the server runs alone on CPU 0 and the load
 * generator, the bench and the OTLP sink share the rest: otherwise the load generator's
 * work lands on the server's core at random and the rounds of one variant spread by
 * ±20%, four times the 5% being judged. A server pinned to one core is CPU-bound, so a
 * variant's cost shows in full in its throughput.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { HttpResult, HttpRun } from "./load/http.ts";
import { availableParallelism } from "node:os";
import { pinToCpus, type ServerProcess } from "./lib/process.ts";

export interface ObsParams {
  rounds: number;
  durationS: number;
  warmupS: number;
  connections: number;
  threads: number;
  body: string;
}

export interface ObsRow {
  variant: string;
  /** req/s of each round, in order. */
  rounds: number[];
  median: number;
  /** Median server CPU ms per request. */
  cpuMs: number;
  /**
   * Median over rounds of this variant's req/s over the variant it is judged against in
   * the same round (everything off for the defaults, the defaults for the OTLP ones).
   */
  pairedRatio?: number;
  /** Whether the server ran alone on its own CPU. */
  pinned: boolean;
}

export interface ObsDeps {
  withOurs: <T>(name: string, env: Record<string, string>, body: (server: ServerProcess) => Promise<T>) => Promise<T>;
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

export async function benchObservability(params: ObsParams, deps: ObsDeps): Promise<ObsRow[]> {
  const cpus = availableParallelism();
  const everyCpu = `0-${cpus - 1}`;
  const pinned = cpus >= 2 && pinToCpus(process.pid, `1-${cpus - 1}`) && pinToCpus(deps.loadPid, `1-${cpus - 1}`);
  deps.log(pinned ? "obs: server on CPU 0, load and bench on the others" : "obs: unpinned (one CPU or no taskset)");
  const sink = await startSink();
  try {
    const otlp = { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf" };
    const variants: Array<{ variant: string; env: Record<string, string> }> = [
      { variant: "everything off (METRICS=off, LOG_LEVEL=warn)", env: { METRICS: "off", LOG_LEVEL: "warn" } },
      { variant: "metrics and logs at their defaults", env: {} },
      { variant: "defaults + OTLP exporter, every span", env: otlp },
      {
        variant: "defaults + OTLP exporter, 10% of traces",
        env: { ...otlp, OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.1" },
      },
    ];
    const results = variants.map(() => ({ rps: [] as number[], cpu: [] as number[] }));
    for (let round = 0; round < params.rounds; round++) {
      // Every other round runs the variants in reverse: each run leaves ~20,000 files
      // behind and file creation slows as they pile up (bench/lib/fs-probe.ts), so a fixed
      // order would charge that drift to whichever variant always runs later in its round.
      const order = round % 2 === 0 ? [...variants.entries()] : [...variants.entries()].reverse();
      for (const [index, { variant, env }] of order) {
        deps.log(`obs: round ${round + 1}, ${variant}`);
        const run: HttpRun = {
          name: "obs",
          method: "POST",
          path: "/v1/threads/{thread}/artifacts",
          threads: params.threads,
          threadPrefix: `obs-${round}-${index}-`,
          body: params.body,
          connections: params.connections,
          durationS: params.durationS,
          warmupS: params.warmupS,
        };
        const result = await deps.withOurs(`obs-${round}-${index}`, env, (server) => {
          if (pinned && !pinToCpus(server.pid, "0")) throw new Error("obs: could not pin the server to CPU 0");
          return deps.measure(server, run);
        });
        const slot = results[index] as { rps: number[]; cpu: number[] };
        slot.rps.push(result.rps);
        slot.cpu.push(result.cpuMsPerRequest ?? Number.NaN);
      }
    }
    deps.log(`obs: the OTLP sink took ${sink.requests()} exports`);
    // Each variant is judged against its neighbour: off ← defaults ← each OTLP variant.
    const judgedAgainst = [undefined, 0, 1, 1];
    return variants.map(({ variant }, index) => {
      const { rps, cpu } = results[index] as { rps: number[]; cpu: number[] };
      const base = judgedAgainst[index];
      const baseRps = base === undefined ? undefined : (results[base] as { rps: number[] }).rps;
      const pairedRatio = baseRps ? median(rps.map((r, round) => r / (baseRps[round] as number))) : undefined;
      return { variant, rounds: rps, median: median(rps), cpuMs: median(cpu), pairedRatio, pinned };
    });
  } finally {
    await sink.close();
    if (pinned) {
      pinToCpus(process.pid, everyCpu);
      pinToCpus(deps.loadPid, everyCpu);
    }
  }
}
