import type { Commit } from "../model/patch.ts";

interface ThreadCommits {
  /** Each commit with its serialized length, oldest first. */
  entries: { commit: Commit; bytes: number }[];
  /** Their lengths' sum. */
  bytes: number;
}

/**
 * The commits this process created lately, per thread: consecutive runs, oldest first,
 * within a budget of serialized bytes over every thread (least recently written thread
 * dropped first). Compaction takes its tail from here instead of reading it back (on
 * the fs store, one get per commit, in sequence; on an object store, a listing and a
 * get per commit). A commit object never changes once created, so what is held stays
 * true; a thread whose run is broken (another writer's commit between, a lost put) or
 * dropped for the budget is read back as before.
 */
export class RecentCommits {
  readonly #maxBytes: number;
  /** In order of last write: the first entry is the next dropped. */
  readonly #threads = new Map<string, ThreadCommits>();
  #bytes = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** A commit this process created, `bytes` long when serialized. */
  add(thread: string, commit: Commit, bytes: number): void {
    let held = this.#threads.get(thread);
    if (held) this.#threads.delete(thread);
    const last = held?.entries[held.entries.length - 1]?.commit;
    if (held && last?.lastSeq !== commit.firstSeq - 1) {
      // Not the next one: the run is broken, so what is held no longer leads here.
      this.#bytes -= held.bytes;
      held = undefined;
    }
    held ??= { entries: [], bytes: 0 };
    held.entries.push({ commit, bytes });
    held.bytes += bytes;
    this.#bytes += bytes;
    this.#threads.set(thread, held);
    this.#fit(thread, held);
  }

  /** The thread's held run (a copy), oldest first; empty when none is held. */
  commits(thread: string): readonly Commit[] {
    return (this.#threads.get(thread)?.entries ?? []).map((entry) => entry.commit);
  }

  /** Drops the thread's commits that end at or before `seq` (compacted: no pass needs them again). */
  releaseThrough(thread: string, seq: number): void {
    const held = this.#threads.get(thread);
    if (!held) return;
    while (held.entries.length > 0 && (held.entries[0]?.commit.lastSeq ?? Infinity) <= seq) this.#shift(held);
    if (held.entries.length === 0) this.#threads.delete(thread);
  }

  /** Bytes held over every thread (for tests and gauges). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Within budget again: other threads go first, least recently written first; then this one's oldest commits. */
  #fit(thread: string, current: ThreadCommits): void {
    for (const [other, held] of this.#threads) {
      if (this.#bytes <= this.#maxBytes || held === current) break;
      this.#bytes -= held.bytes;
      this.#threads.delete(other);
    }
    while (this.#bytes > this.#maxBytes && current.entries.length > 0) this.#shift(current);
    if (current.entries.length === 0) this.#threads.delete(thread);
  }

  #shift(thread: ThreadCommits): void {
    const size = thread.entries.shift()?.bytes ?? 0;
    thread.bytes -= size;
    this.#bytes -= size;
  }
}
