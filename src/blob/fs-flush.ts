/**
 * syncfs(2) for the fs store's checkpoints, through coreutils' `sync --file-system` (Node
 * and Deno bind no syncfs): one flush of the whole file system instead of an open, fsync
 * and close per object. Linux only.
 *
 * **One helper process, not a process per flush (Node).** Node starts a child with
 * fork(2), which copies the page tables of the whole server, on the main thread: measured
 * here, 7 ms for a 50 MB process and 16-30 ms at 250-500 MB, every checkpoint (every 2 s),
 * each one a stall of every request in flight (the creates' p99) and ~2% of the main
 * thread under load. So the first flush starts one small shell that reads a folder per
 * line and answers each with `sync`'s exit status; a flush is then a line written to a
 * pipe. Deno starts children without copying (posix_spawn), and runs `sync` directly: its
 * tasks grant `--allow-run=sync`, not a shell.
 *
 * Answers: true once the flush is done; false when it failed (an I/O error: for this call
 * only) or cannot run here (another OS, no coreutils, no shell, Deno without the
 * permission: false from then on, and the store fsyncs object by object instead).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { platform } from "node:os";

/** A flush that has not answered by then counts as failed, and its helper is replaced. */
const FLUSH_TIMEOUT_MS = 120_000;

/**
 * Reads one folder per line and answers each with the exit status of its flush. `sync`
 * not found (127) or not runnable (126) is how the caller learns it cannot flush here.
 */
const HELPER_SCRIPT = 'while IFS= read -r dir; do sync --file-system -- "$dir"; echo "$?"; done';

export interface FileSystemFlusherOptions {
  /** The shell the helper runs in (default `/bin/sh`). */
  shell?: string;
  /** The helper's environment (tests: a PATH without `sync`). Default: this process's. */
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Told of each helper started (tests count them). */
  onHelper?: (helper: ChildProcess) => void;
}

interface Waiting {
  resolve: (flushed: boolean) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Node's flusher: the long-lived helper above, started on the first flush. */
export class FileSystemFlusher {
  readonly #o: FileSystemFlusherOptions;
  #works = platform() === "linux";
  #helper: ChildProcess | null = null;
  /** Flushes asked of the current helper, answered in order. */
  #waiting: Waiting[] = [];
  #partial = "";

  constructor(options: FileSystemFlusherOptions = {}) {
    this.#o = options;
  }

  flush(path: string): Promise<boolean> {
    if (!this.#works) return Promise.resolve(false);
    // A folder name with a line break cannot go on a line: that flush is a process of its own.
    if (path.includes("\n")) return flushOnce(path);
    const helper = this.#helper ?? this.#start();
    if (!helper) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#replace(), this.#o.timeoutMs ?? FLUSH_TIMEOUT_MS);
      this.#waiting.push({ resolve, timer });
      // Held open while a flush is asked (a shutdown's last checkpoint waits for it), not otherwise.
      holdPipes(helper, true);
      helper.stdin?.write(`${path}\n`);
    });
  }

  /** Ends the helper (its flushes in flight answer false). */
  close(): void {
    this.#replace();
  }

  #start(): ChildProcess | null {
    let helper: ChildProcess;
    try {
      helper = spawn(this.#o.shell ?? "/bin/sh", ["-c", HELPER_SCRIPT], {
        stdio: ["pipe", "pipe", "ignore"],
        ...(this.#o.env ? { env: this.#o.env } : {}),
      });
    } catch {
      this.#works = false;
      return null;
    }
    this.#helper = helper;
    this.#partial = "";
    helper.stdout?.setEncoding("utf8");
    helper.stdout?.on("data", (chunk: string) => this.#answer(helper, chunk));
    // No shell to start (ENOENT): nothing flushes here. A write to a helper that died meanwhile: its exit answers.
    helper.on("error", (error: NodeJS.ErrnoException) => {
      if (error.syscall?.startsWith("spawn")) this.#works = false;
      if (this.#helper === helper) this.#replace();
    });
    helper.stdin?.on("error", () => {});
    helper.on("exit", () => {
      if (this.#helper === helper) this.#replace();
    });
    helper.unref();
    this.#o.onHelper?.(helper);
    return helper;
  }

  #answer(helper: ChildProcess, chunk: string): void {
    if (this.#helper !== helper) return;
    const lines = (this.#partial + chunk).split("\n");
    this.#partial = lines.pop() ?? "";
    for (const line of lines) {
      const status = Number(line);
      if (status === 126 || status === 127) this.#works = false;
      const waiting = this.#waiting.shift();
      if (!waiting) continue;
      clearTimeout(waiting.timer);
      waiting.resolve(status === 0);
    }
    if (this.#waiting.length === 0) holdPipes(helper, false);
  }

  /** Fails what the helper was asked and ends it; the next flush starts a new one (where flushing works). */
  #replace(): void {
    const helper = this.#helper;
    this.#helper = null;
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const { resolve, timer } of waiting) {
      clearTimeout(timer);
      resolve(false);
    }
    if (helper) {
      helper.stdin?.end();
      helper.kill("SIGKILL");
      // Its pipes may still hold the event loop: let them go.
      holdPipes(helper, false);
    }
  }
}

/** Whether the helper's pipes keep the event loop (and so the process) alive. */
function holdPipes(helper: ChildProcess, hold: boolean): void {
  for (const pipe of [helper.stdin, helper.stdout]) {
    const socket = pipe as unknown as { ref?: () => void; unref?: () => void } | null;
    if (hold) socket?.ref?.();
    else socket?.unref?.();
  }
}

/** One `sync --file-system` process for one flush (Deno; a folder name with a line break). */
let flushOnceWorks = platform() === "linux";
function flushOnce(path: string): Promise<boolean> {
  if (!flushOnceWorks) return Promise.resolve(false);
  return new Promise((resolve) => {
    try {
      execFile("sync", ["--file-system", path], { timeout: FLUSH_TIMEOUT_MS }, (error) => {
        // A spawn failure has a string code (ENOENT, EACCES); an exit status, a number.
        if (error && typeof (error as { code?: unknown }).code !== "number") flushOnceWorks = false;
        resolve(error === null);
      });
    } catch {
      flushOnceWorks = false; // Deno without the permission throws here.
      resolve(false);
    }
  });
}

const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
let shared: FileSystemFlusher | null = null;

/** The process's flush of the file system holding `path` (see above). */
export function syncFileSystem(path: string): Promise<boolean> {
  if (isDeno) return flushOnce(path);
  shared ??= new FileSystemFlusher();
  return shared.flush(path);
}
