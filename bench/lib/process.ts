import { type ChildProcess, execFileSync, fork, spawn } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

/** The repository root (bench/lib/ is two levels down). */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Every child this run started, so an interrupted run ends exactly those (by pid). */
const children = new Set<ChildProcess>();

export function killAllChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  children.clear();
}

export interface ServerProcess {
  name: string;
  url: string;
  pid: number;
  child: ChildProcess;
  output: () => string;
  /** SIGTERM, then SIGKILL after 3 s; resolves on exit. */
  stop: () => Promise<void>;
}

/**
 * Starts a TypeScript entry (`node <entry>`: Node's own type stripping, as `npm start`
 * runs the server) on 127.0.0.1 with PORT=0 and resolves once it prints
 * `listening on http://...`. Bounded: rejects after `timeoutMs`.
 */
export async function startServer(
  name: string,
  entry: string,
  env: Record<string, string>,
  options: { nodeArgs?: string[]; timeoutMs?: number } = {},
): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), entry], {
    cwd: ROOT,
    env: { ...process.env, HOST: "127.0.0.1", PORT: "0", NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let output = "";
  const tail: Buffer[] = [];
  let tailBytes = 0;
  const exited = once(child, "exit");
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${name} did not start within ${options.timeoutMs ?? 20_000} ms:\n${output}`)),
        options.timeoutMs ?? 20_000,
      );
      let listening = false;
      const onData = (chunk: Buffer) => {
        // Keep only the tail: a server that logs a lot must not grow this without bound.
        // Once it listens, only keep the last chunks: re-slicing 20 kB for each access line
        // would spend the bench's CPU (a core the server's own work competes for).
        if (listening) {
          tail.push(chunk);
          tailBytes += chunk.length;
          while (tailBytes > 40_000 && tail.length > 1) tailBytes -= (tail.shift() as Buffer).length;
          return;
        }
        output = (output + chunk.toString()).slice(-20_000);
        const match = /listening on (http:\/\/[^\s/"]+)/i.exec(output);
        if (match) {
          listening = true;
          clearTimeout(timer);
          resolve(match[1] as string);
        }
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited with ${code} before listening:\n${output}`));
      });
    });
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const escalate = setTimeout(() => child.kill("SIGKILL"), 3000);
        await exited;
        clearTimeout(escalate);
      }
      children.delete(child);
    };
    const allOutput = () => (output + Buffer.concat(tail).toString()).slice(-20_000);
    return { name, url, pid: child.pid as number, child, output: allOutput, stop };
  } catch (error) {
    child.kill("SIGKILL");
    children.delete(child);
    throw error;
  }
}

/**
 * Runs a load script (`bench/load/*.ts`) as its own process with an IPC channel and
 * returns the first message it sends back as its result. Bounded by `timeoutMs`.
 */
export async function runLoad<T>(entry: string, config: unknown, timeoutMs: number): Promise<T> {
  const worker = startLoadWorker(entry);
  try {
    return await worker.request<T>(config, timeoutMs);
  } finally {
    await worker.close();
  }
}

export interface LoadWorker {
  pid: number;
  /** Sends a message and resolves with the next message back (one request at a time). */
  request<T>(message: unknown, timeoutMs: number): Promise<T>;
  close(): Promise<void>;
}

/** A long-lived load process spoken to over IPC: one request, one reply. */
export function startLoadWorker(entry: string): LoadWorker {
  const child = fork(entry, [], {
    cwd: ROOT,
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  children.add(child);
  const exited = once(child, "exit");
  return {
    pid: child.pid as number,
    request<T>(message: unknown, timeoutMs: number): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const cleanup = () => {
          clearTimeout(timer);
          child.off("message", onMessage);
          child.off("exit", onExit);
        };
        const onMessage = (reply: unknown) => {
          cleanup();
          const r = reply as { error?: string };
          if (r && typeof r === "object" && typeof r.error === "string") reject(new Error(`${entry}: ${r.error}`));
          else resolve(reply as T);
        };
        const onExit = (code: number | null) => {
          cleanup();
          reject(new Error(`${entry} exited with ${code} before answering`));
        };
        const timer = setTimeout(() => {
          cleanup();
          child.kill("SIGKILL");
          reject(new Error(`${entry} did not answer within ${timeoutMs} ms`));
        }, timeoutMs);
        child.on("message", onMessage);
        child.once("exit", onExit);
        child.send(message as object);
      });
    },
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        child.disconnect();
        const escalate = setTimeout(() => child.kill("SIGKILL"), 3000);
        await exited;
        clearTimeout(escalate);
      }
      children.delete(child);
    },
  };
}

/** A loopback port nothing listens on (bound, then closed): "libSQL down". */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!address || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** Resident set size of a process, from /proc/<pid>/status VmRSS, in bytes. */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!match) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]) * 1024;
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/**
 * Pins every thread of `pid` (and the threads it starts later) to `cpus` ("0", "1",
 * "0,1") with taskset. Returns false where taskset is missing or refuses, so a bench
 * can say it ran unpinned.
 */
export function pinToCpus(pid: number, cpus: string): boolean {
  try {
    execFileSync("taskset", ["-a", "-pc", cpus, String(pid)], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** CPU time (user + system) a process has used so far, in ms, from /proc/<pid>/stat. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start at "state": utime and stime are 14 and 15 overall.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
}

/** The pids of `parent`'s children running `command` (its `comm`, as /proc/<pid>/stat names it), oldest first. */
export function childPids(parent: number, command: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (comm === command && ppid === parent) found.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return found.sort((a, b) => a - b);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
