/**
 * Log lines gathered for one write to stdout: a write to a pipe is a system call, and on
 * this machine's VM a call costs tens of µs of CPU. Lines go out when `maxBytes` are
 * pending, or `maxDelayMs` after the first of them, whichever comes first; `flush` sends
 * what is pending now (the Node server calls it as the process exits).
 *
 * Why a time window and not one write per turn of the event loop (as before): under load a
 * turn serves one to three requests, so that was a write per one to three access lines.
 * Measured on servers with their data in `/dev/shm` (docs/decisions.md, "Logs"): a create
 * took 578 µs of server CPU with a write per turn, 462 µs with a 10 ms window. The price: a
 * `kill -9` loses up to the window's lines (10 ms of them), where it lost one turn's. pino's
 * asynchronous destination (`minLength`) makes the same trade.
 */
export interface LineBufferOptions<Timer> {
  write: (chunk: string) => void;
  maxDelayMs: number;
  maxBytes: number;
  /** A timer that does not keep the process alive (Node: `unref`). */
  later: (run: () => void, ms: number) => Timer;
  cancel: (timer: Timer) => void;
}

export interface LineBuffer {
  /** Takes one line (without its newline). */
  add(line: string): void;
  /** Writes what is pending now. */
  flush(): void;
}

export function lineBuffer<Timer>(options: LineBufferOptions<Timer>): LineBuffer {
  let pending = "";
  let timer: Timer | undefined;
  const flush = () => {
    if (timer !== undefined) {
      options.cancel(timer);
      timer = undefined;
    }
    if (pending === "") return;
    const chunk = pending;
    pending = "";
    options.write(chunk);
  };
  return {
    add(line) {
      pending += `${line}\n`;
      // String length counts UTF-16 units, not bytes: close enough for a bound on a write.
      if (pending.length >= options.maxBytes) flush();
      else if (timer === undefined) timer = options.later(flush, options.maxDelayMs);
    },
    flush,
  };
}
