/**
 * The one bounded wait of the test suite: something the test cannot await directly (a
 * background sweep, a cache healing itself, a client reconnecting) is re-checked until it
 * holds, and a wait that never ends fails with what it was waiting for. Never a bare sleep.
 * (A stream read as it arrives waits on its own events instead: `SseConnection.until`.)
 */

export const DEFAULT_TIMEOUT_MS = 20_000;

export interface WaitOptions {
  /** Give up after this long (default 20 s). */
  timeoutMs?: number;
  /** Pause between two checks (default 20 ms): it spaces the checks out, it is not what the test waits for. */
  intervalMs?: number;
}

/** Not yet: `undefined` or `false`. Anything else is the answer. */
type NotYet = undefined | false;

/**
 * Re-runs `check` until it returns something other than `undefined` or `false`, and
 * returns that: `waitFor("the sweep", () => sweptFiles())` gives the files, and
 * `waitFor("two events", () => events.length === 2)` gives `true`. A check that throws
 * (an `expect` inside it, a request refused while a server is away) counts as not yet;
 * the last error is named in the timeout's message.
 */
export async function waitFor<T>(
  what: string,
  check: () => T | NotYet | Promise<T | NotYet>,
  { timeoutMs = DEFAULT_TIMEOUT_MS, intervalMs = 20 }: WaitOptions = {},
): Promise<Exclude<T, NotYet>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value as Exclude<T, NotYet>;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? "" : `: ${String(last)}`}`,
        { cause: last },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
