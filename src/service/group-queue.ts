/**
 * Per-key queues drained one group at a time: what arrives for a key while its
 * group is being committed waits, then goes together as the next group. Writers to
 * one thread in one process so share one context read, one ordered rollout append and
 * one cache batch instead of racing each other for the same seq; only other
 * processes cause put-if-absent conflicts.
 *
 * A group may hand the key over before it has finished (`release`): once what the next
 * group depends on is settled (its commit durable, the state the next one is decided
 * on in place), the next group starts while this one still answers its writers.
 */
export class GroupQueue<T> {
  readonly #queues = new Map<string, T[]>();
  readonly #maxGroup: number;
  readonly #commit: (key: string, group: T[], release: () => void) => Promise<void>;
  readonly #alone: (item: T) => boolean;

  /**
   * `commit` must settle every item of the group it is given; for one key, it is never
   * run again before the previous run has called `release` or ended (whichever comes
   * first). An item `alone` says must be alone goes as a group of its own.
   */
  constructor(
    maxGroup: number,
    commit: (key: string, group: T[], release: () => void) => Promise<void>,
    alone: (item: T) => boolean = () => false,
  ) {
    this.#maxGroup = maxGroup;
    this.#commit = commit;
    this.#alone = alone;
  }

  push(key: string, item: T): void {
    const queue = this.#queues.get(key);
    if (queue) {
      queue.push(item);
      return;
    }
    const fresh = [item];
    this.#queues.set(key, fresh);
    void this.#drain(key, fresh);
  }

  async #drain(key: string, queue: T[]): Promise<void> {
    while (queue.length > 0) {
      const group = queue.splice(0, this.#groupSize(queue));
      await new Promise<void>((released) => {
        // A commit that throws has broken its promise to settle its group, but the
        // groups behind it still get their turn.
        this.#commit(key, group, released).catch(() => {}).finally(released);
      });
    }
    this.#queues.delete(key);
  }

  /** How many items from the head of `queue` go next: up to the bound, never past an item that must be alone. */
  #groupSize(queue: readonly T[]): number {
    if (queue[0] !== undefined && this.#alone(queue[0])) return 1;
    const bound = Math.min(queue.length, this.#maxGroup);
    for (let i = 1; i < bound; i++) if (this.#alone(queue[i] as T)) return i;
    return bound;
  }
}
