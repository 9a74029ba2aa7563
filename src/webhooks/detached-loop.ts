/**
 * Work posted from a request (a commit's hint, a replay, a changed subscription) that
 * must not run as part of it: a loop started once, outside any request, runs each posted
 * task as its own continuation, so the task (and every timer it sets) carries the loop's
 * async context, not the request's: no request id on its log lines, no span under the
 * request's trace, and nothing of it holds up the answer.
 */
export class DetachedLoop {
  readonly #tasks: (() => Promise<void> | void)[] = [];
  readonly #onError: (error: unknown) => void;
  #wake: (() => void) | null = null;
  #running = false;
  #stopped = false;

  constructor(onError: (error: unknown) => void) {
    this.#onError = onError;
  }

  /** Call outside any request. */
  start(): void {
    if (this.#running || this.#stopped) return;
    this.#running = true;
    void this.#loop();
  }

  post(task: () => Promise<void> | void): void {
    if (this.#stopped) return;
    this.#tasks.push(task);
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** Tasks posted from now on are dropped; those started run to their end. */
  stop(): void {
    this.#stopped = true;
    this.#tasks.length = 0;
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      if (this.#tasks.length === 0) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        continue;
      }
      for (const task of this.#tasks.splice(0)) void (async () => task())().catch(this.#onError);
    }
  }
}
