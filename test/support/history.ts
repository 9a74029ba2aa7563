// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the checker judges them
/**
 * The harness of the randomized multi-process history test (test/chaos): a pool of real
 * server processes on one DATA_DIR that faults act on (kill -9 and restart, SIGSTOP for a
 * while, the libSQL files deleted under running processes), lanes of writers and readers
 * sending to whichever process is up, SSE readers that reconnect with Last-Event-ID, and
 * a recording of all of it for test/support/history-check.ts.
 *
 * Every random choice comes from mulberry32 generators derived from one seed (one per
 * lane, per reader, one for the faults), so a seed reproduces each actor's schedule;
 * how the actors interleave is up to the machine.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Cluster } from "./cluster.ts";
import { mulberry32 } from "./faulty-blob-store.ts";
import type { ReaderRecord, RequestKind, RequestRecord, SseEventRecord } from "./history-check.ts";
import type { ServerProcess } from "./server-process.ts";
import { SpecSseParser } from "./sse.ts";

export type Rand = () => number;

/** A generator for one actor of the run: the same seed and name give the same sequence. */
export function randFor(seed: number, name: string): Rand {
  let h = seed >>> 0;
  for (const ch of name) h = Math.imul(h ^ ch.charCodeAt(0), 0x9e3779b1) >>> 0;
  return mulberry32(h ^ 0x5bd1e995);
}

const pickOne = <T>(rand: Rand, items: readonly T[]): T => items[Math.floor(rand() * items.length)] as T;
const between = (rand: Rand, min: number, max: number) => min + Math.floor(rand() * (max - min + 1));
/** A pause that is part of the schedule (never a synchronisation). */
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------
// The processes.

interface Slot {
  index: number;
  server: ServerProcess | null;
  /** This slot's incarnation: `p<index>#<n>`. */
  name: string;
  starts: number;
  paused: boolean;
}

export interface FaultRecord {
  kind: "kill" | "pause" | "drop-cache";
  at: number;
  process: string;
  detail: string;
}

/** Server processes on one DATA_DIR; lanes pick one that is up and not paused. */
export class ProcessPool {
  readonly slots: Slot[] = [];
  readonly faults: FaultRecord[] = [];
  readonly #cluster: Cluster;
  readonly #env: Record<string, string>;
  /** Every child ever started (to SIGCONT them whatever happens). */
  readonly #children = new Set<ServerProcess>();

  constructor(cluster: Cluster, env: Record<string, string>) {
    this.#cluster = cluster;
    this.#env = env;
  }

  async start(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      this.slots.push({ index: i, server: null, name: `p${i}#0`, starts: 0, paused: false });
    }
    await Promise.all(this.slots.map((slot) => this.#boot(slot)));
  }

  async #boot(slot: Slot): Promise<void> {
    const server = await this.#cluster.start(this.#env);
    this.#children.add(server);
    slot.starts += 1;
    slot.name = `p${slot.index}#${slot.starts}`;
    slot.server = server;
  }

  /** A process that is up and not paused, or undefined. */
  pick(rand: Rand): { url: string; name: string } | undefined {
    const up = this.slots.filter((s) => s.server !== null && !s.paused);
    if (up.length === 0) return undefined;
    const slot = pickOne(rand, up);
    return { url: (slot.server as ServerProcess).url, name: slot.name };
  }

  #victim(rand: Rand): Slot | undefined {
    const up = this.slots.filter((s) => s.server !== null && !s.paused);
    // Keep one process serving at all times.
    return up.length > 1 ? pickOne(rand, up) : undefined;
  }

  /** kill -9 one process and start a new one in its place (a new port). */
  async killAndRestart(rand: Rand, kind: "kill" | "drop-cache" = "kill", detail = "SIGKILL, restarted"): Promise<void> {
    const slot = this.#victim(rand);
    if (!slot) return;
    const server = slot.server as ServerProcess;
    this.faults.push({ kind, at: performance.now(), process: slot.name, detail });
    slot.server = null;
    await server.kill();
    await this.#boot(slot);
  }

  /** SIGSTOP one process for `ms`, then SIGCONT. */
  async pause(rand: Rand, ms: number): Promise<void> {
    const slot = this.#victim(rand);
    if (!slot) return;
    const server = slot.server as ServerProcess;
    this.faults.push({ kind: "pause", at: performance.now(), process: slot.name, detail: `SIGSTOP ${ms} ms` });
    slot.paused = true;
    server.child.kill("SIGSTOP");
    try {
      await pause(ms);
    } finally {
      server.child.kill("SIGCONT");
      slot.paused = false;
    }
  }

  /** Deletes the libSQL files under the running processes, then restarts one so it starts a fresh cache. */
  async dropCache(rand: Rand, dataDir: string): Promise<void> {
    for (const suffix of ["", "-wal", "-shm"]) rmSync(join(dataDir, `artifacts.db${suffix}`), { force: true });
    await this.killAndRestart(rand, "drop-cache", "artifacts.db(-wal,-shm) deleted, then SIGKILL and restart");
  }

  /** SIGCONT every child ever started (a stopped process would not even die of SIGTERM). */
  resumeAll(): void {
    for (const server of this.#children) {
      if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill("SIGCONT");
    }
    for (const slot of this.slots) slot.paused = false;
  }

  /** SIGTERM every process and wait for them (the pool is then empty). */
  async stopAll(): Promise<void> {
    this.resumeAll();
    const servers = this.slots.map((s) => s.server).filter((s): s is ServerProcess => s !== null);
    for (const slot of this.slots) slot.server = null;
    await Promise.all(servers.map((s) => s.stop()));
  }

  /** After stopAll: one fresh process serves alone. */
  async restartOne(): Promise<void> {
    this.slots.splice(0);
    this.slots.push({ index: 0, server: null, name: "final", starts: 0, paused: false });
    const slot = this.slots[0] as Slot;
    await this.#boot(slot);
    slot.name = "final";
  }
}

// ---------------------------------------------------------------------------------------
// Requests.

export interface RunConfig {
  seed: number;
  durationMs: number;
  threads: string[];
  lanes: number;
  readersPerThread: number;
  /** Bound on each lane's operations (the default run must fit `npm test`). */
  maxOpsPerLane: number;
  requestTimeoutMs: number;
  /** Pause between two faults, ms. */
  faultGapMs: [number, number];
}

export class Recorder {
  readonly requests: RequestRecord[] = [];
  #n = 0;
  readonly #timeoutMs: number;

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
  }

  async send(
    target: { url: string; name: string },
    meta: {
      lane: number;
      kind: RequestKind;
      thread: string;
      tag?: string;
      artifactId?: string;
      target?: string;
    },
    method: string,
    path: string,
    body?: unknown,
    contentType = "application/json",
  ): Promise<RequestRecord> {
    const record: RequestRecord = {
      n: this.#n++,
      ...meta,
      process: target.name,
      method,
      path,
      ...(body !== undefined ? { contentType, body } : {}),
      start: performance.now(),
      end: 0,
      status: null,
      outcome: "unknown",
    };
    this.requests.push(record);
    try {
      const response = await fetch(new URL(path, target.url), {
        method,
        headers: body !== undefined ? { "content-type": contentType } : {},
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      const text = await response.text();
      record.status = response.status;
      try {
        record.response = text ? JSON.parse(text) : undefined;
      } catch {
        record.response = text;
      }
      record.outcome = response.status >= 200 && response.status < 300
        ? "ack"
        : response.status >= 400 && response.status < 500
        ? "refused"
        : "unknown";
    } catch (error) {
      record.status = null;
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      record.error = `${(error as Error).name}: ${(error as Error).message}${
        cause ? ` (${cause.code ?? cause.message})` : ""
      }`;
      record.outcome = "unknown";
    }
    record.end = performance.now();
    return record;
  }
}

// ---------------------------------------------------------------------------------------
// Lanes.

interface Known {
  /** Artifacts believed to exist, by thread. */
  artifacts: Map<string, Map<string, { identityKey: string | null }>>;
  /** The last fresh payload sent per (thread, identity key), for idempotent repeats. */
  families: Map<string, Map<string, { payload: any; tag: string }>>;
  forks: string[];
}

const IDENTITY_KEYS = ["k0", "k1", "k2"];

export class Lanes {
  readonly #pool: ProcessPool;
  readonly #recorder: Recorder;
  readonly #config: RunConfig;
  readonly #known: Known = { artifacts: new Map(), families: new Map(), forks: [] };
  #deadline = 0;

  constructor(pool: ProcessPool, recorder: Recorder, config: RunConfig) {
    this.#pool = pool;
    this.#recorder = recorder;
    this.#config = config;
    for (const t of config.threads) {
      this.#known.artifacts.set(t, new Map());
      this.#known.families.set(t, new Map());
    }
  }

  get forks(): readonly string[] {
    return this.#known.forks;
  }

  run(deadline: number): Promise<void> {
    this.#deadline = deadline;
    return Promise.all(Array.from({ length: this.#config.lanes }, (_, i) => this.#lane(i))).then(() => {});
  }

  async #lane(lane: number): Promise<void> {
    const rand = randFor(this.#config.seed, `lane-${lane}`);
    for (let n = 0; n < this.#config.maxOpsPerLane && performance.now() < this.#deadline; n++) {
      const target = this.#pool.pick(rand);
      if (!target) {
        await pause(50);
        continue;
      }
      await this.#op(rand, lane, n, target);
      await pause(between(rand, 0, 15));
    }
  }

  async #op(rand: Rand, lane: number, n: number, target: { url: string; name: string }): Promise<void> {
    const thread = pickOne(rand, this.#config.threads);
    const tag = `L${lane}-${n}`;
    const base = `/v1/threads/${thread}`;
    const known = this.#known.artifacts.get(thread) as Map<string, { identityKey: string | null }>;
    const families = this.#known.families.get(thread) as Map<string, { payload: any; tag: string }>;
    const send = this.#recorder.send.bind(this.#recorder, target);
    let roll = rand() * 100;
    const ids = [...known.keys()];
    // Nothing known to update: create instead.
    if (roll >= 40 && roll < 78 && ids.length === 0) roll = rand() * 40;
    if (roll < 22) {
      const r = await send({ lane, kind: "create", thread, tag }, "POST", `${base}/artifacts`, {
        artifactType: "note",
        payload: { tag, k: "c" },
      });
      this.#learn(thread, r);
    } else if (roll < 40) {
      const key = pickOne(rand, IDENTITY_KEYS);
      const family = families.get(key);
      if (family && roll < 32) {
        // The same payload again: idempotent 200, or a create if the identity is gone.
        const r = await send({ lane, kind: "create-repeat", thread, tag: family.tag }, "POST", `${base}/artifacts`, {
          artifactType: "doc",
          identityKey: key,
          payload: family.payload,
        });
        this.#learn(thread, r);
      } else {
        // A fresh payload: 201, or 409 while the identity exists with another payload.
        const payload = { tag, k: key };
        families.set(key, { payload, tag });
        const r = await send({ lane, kind: "create-identity", thread, tag }, "POST", `${base}/artifacts`, {
          artifactType: "doc",
          identityKey: key,
          payload,
        });
        this.#learn(thread, r);
      }
    } else if (roll < 78) {
      const artifactId = pickOne(rand, ids);
      const path = `${base}/artifacts/${artifactId}`;
      let r: RequestRecord;
      if (roll < 53) {
        r = await send({ lane, kind: "update", thread, tag, artifactId }, "PATCH", path, { payload: { tag, k: "u" } });
      } else if (roll < 68) {
        r = await send(
          { lane, kind: "merge", thread, tag, artifactId },
          "PATCH",
          path,
          { payload: { m: tag } },
          "application/merge-patch+json",
        );
      } else {
        r = await send({ lane, kind: "remove", thread, artifactId }, "DELETE", path);
        if (r.outcome !== "refused") known.delete(artifactId);
      }
      if (r.status === 404) {
        if (r.response?.code === "thread_not_found") known.clear();
        else known.delete(artifactId);
      }
    } else if (roll < 96) {
      const r = await send({ lane, kind: "read", thread }, "GET", base);
      if (r.status === 200 && Array.isArray(r.response?.thread?.artifacts)) {
        known.clear();
        for (const a of r.response.thread.artifacts) known.set(a.id, { identityKey: a.identityKey });
      } else if (r.status === 404) known.clear();
    } else if (roll < 98) {
      const r = await send({ lane, kind: "delete-thread", thread }, "DELETE", base);
      if (r.outcome !== "refused" || r.status === 404) known.clear();
    } else {
      const forkId = `fork-${lane}-${n}`;
      const r = await send({ lane, kind: "fork", thread, target: forkId }, "POST", `${base}/fork`, {
        threadId: forkId,
      });
      if (r.outcome !== "refused") this.#known.forks.push(forkId);
    }
  }

  #learn(thread: string, r: RequestRecord): void {
    const known = this.#known.artifacts.get(thread) as Map<string, { identityKey: string | null }>;
    const a = r.response?.artifact;
    if (r.outcome === "ack" && a?.id) known.set(a.id, { identityKey: a.identityKey });
  }
}

// ---------------------------------------------------------------------------------------
// SSE readers.

/** One reader of a thread's stream: reconnects with Last-Event-ID whenever the stream ends or fails. */
export class StreamReader {
  readonly record: ReaderRecord;
  readonly #pool: ProcessPool;
  readonly #rand: Rand;
  #stopped = false;
  #controller: AbortController | null = null;
  #done: Promise<void> | null = null;
  connections = 0;
  failures = 0;

  constructor(pool: ProcessPool, seed: number, name: string, thread: string) {
    this.#pool = pool;
    this.#rand = randFor(seed, name);
    this.record = { name, thread, events: [] };
  }

  /** The id of the last event received (0 before any). */
  get lastSeq(): number {
    return Number(this.record.events.at(-1)?.id ?? 0);
  }

  start(): void {
    this.#done = this.#loop();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#controller?.abort();
    await this.#done;
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      const target = this.#pool.pick(this.#rand);
      if (!target) {
        await pause(100);
        continue;
      }
      await this.#connect(target);
      if (!this.#stopped) await pause(between(this.#rand, 50, 250));
    }
  }

  async #connect(target: { url: string; name: string }): Promise<void> {
    const controller = new AbortController();
    this.#controller = controller;
    const connection = ++this.connections;
    const last = this.record.events.at(-1)?.id;
    try {
      const response = await fetch(new URL(`/v1/threads/${this.record.thread}/events`, target.url), {
        headers: { accept: "text/event-stream", ...(last ? { "last-event-id": last } : {}) },
        signal: controller.signal,
      });
      if (response.status !== 200 || !response.body) {
        this.failures++;
        await response.body?.cancel();
        return;
      }
      const parser = new SpecSseParser();
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let seen = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parser.push(decoder.decode(value, { stream: true }));
        for (; seen < parser.events.length; seen++) {
          const e = parser.events[seen] as { lastEventId: string; type: string; data: string };
          const event: SseEventRecord = {
            id: e.lastEventId,
            event: e.type,
            data: e.data,
            connection,
            process: target.name,
          };
          this.record.events.push(event);
        }
      }
    } catch {
      this.failures++;
    } finally {
      this.#controller = null;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Faults.

/** Until the deadline: a fault, a pause, the next fault; kinds in a seeded shuffled cycle so each occurs. */
export async function runFaults(
  pool: ProcessPool,
  config: RunConfig,
  dataDir: string,
  deadline: number,
): Promise<void> {
  const rand = randFor(config.seed, "faults");
  const cycle = (): Array<"kill" | "pause" | "drop-cache"> => {
    const kinds: Array<"kill" | "pause" | "drop-cache"> = ["kill", "pause", "drop-cache", "kill", "pause"];
    for (let i = kinds.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [kinds[i], kinds[j]] = [kinds[j] as "kill", kinds[i] as "kill"];
    }
    return kinds;
  };
  let queue = cycle();
  for (;;) {
    const gap = between(rand, config.faultGapMs[0], config.faultGapMs[1]);
    await pause(Math.max(0, Math.min(gap, deadline - performance.now())));
    if (performance.now() >= deadline) return;
    if (queue.length === 0) queue = cycle();
    const kind = queue.shift() as "kill";
    if (kind === "kill") await pool.killAndRestart(rand);
    else if (kind === "pause") await pool.pause(rand, between(rand, 1000, 3000));
    else await pool.dropCache(rand, dataDir);
  }
}
