/** A call that took longer than its deadline: the store counts as failing for that call. */
export class DeadlineError extends Error {
  constructor(what: string, ms: number) {
    super(`${what} took longer than ${ms} ms`);
    this.name = "DeadlineError";
  }
}

/**
 * `promise`, or a DeadlineError after `ms` (naming `what`). The deadline for every store
 * call that must not hang a caller: libSQL calls, event log reads. The late result of an
 * abandoned call is dropped; the timer never outlives the race.
 */
export function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(what, ms)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
