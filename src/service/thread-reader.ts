import type { ChangedThread, EventPage, ThreadCursor } from "../cache/port.ts";
import { type Artifact, parseThreadJson, type ThreadJson, type ThreadState, toThreadJson } from "../model/artifact.ts";
import { ProblemError } from "../model/errors.ts";
import { type LogEvent, logEventOf } from "../model/patch.ts";
import type { Rollout } from "../rollout/rollout.ts";
import type { CacheGuard } from "./cache-guard.ts";
import type { CacheRepairer } from "./cache-repairer.ts";

export type ReadSource = "cache" | "rollout" | "repaired";
export type Consistency = "strong" | "cache";

export interface ReadResult {
  thread: ThreadJson;
  source: ReadSource;
}

/**
 * Knows a thread's head without asking the store (Workers: the thread's sequencer holds
 * it in memory): strong reads compare the cache to it instead of checking the rollout
 * for the commit after the cached seq.
 */
export interface HeadSource {
  head(tenant: string, threadId: string): Promise<number>;
  /** The thread at (at least) that head, when the cache lags behind it: cheaper than a repair from the rollout. */
  thread?(tenant: string, threadId: string): Promise<ThreadJson | null>;
}

export interface ThreadPage {
  threads: ThreadState[];
  next: ThreadCursor | null;
}

/**
 * The read path: the cache when it is reachable and at the rollout head (one existence
 * check of the commit after its seq tells), repaired on the way when it is behind, and
 * the rollout alone when it is down.
 */
export class ThreadReader {
  readonly #rollout: Rollout;
  readonly #guard: CacheGuard;
  readonly #repairer: CacheRepairer;
  readonly #heads: HeadSource | undefined;

  readonly #touchedLife: (tenant: string, threadId: string, lifeStart: number) => void;
  readonly #freshMs: number;
  readonly #now: () => Date;

  constructor(options: {
    rollout: Rollout;
    guard: CacheGuard;
    repairer: CacheRepairer;
    heads?: HeadSource;
    /** A read met a thread whose life started at a tombstone: its earlier lives may still need sweeping. */
    touchedLife?: (tenant: string, threadId: string, lifeStart: number) => void;
    /** A cached thread last written longer ago than this is checked against the life marker too (see GroupWriterOptions.freshMs). */
    freshMs?: number;
    now?: () => Date;
  }) {
    this.#rollout = options.rollout;
    this.#guard = options.guard;
    this.#repairer = options.repairer;
    this.#heads = options.heads;
    this.#touchedLife = options.touchedLife ?? (() => {});
    this.#freshMs = options.freshMs ?? Infinity;
    this.#now = options.now ?? (() => new Date());
  }

  /**
   * Whether the rollout has a commit after boundary `seq`: one existence check, or, with
   * a head source, a comparison with its head (fetched alongside the cache read).
   */
  #behind(tenant: string, threadId: string, seq: number, head: Promise<number> | undefined): Promise<boolean> {
    if (head) return head.then((h) => h > seq, () => this.#rollout.hasCommitAfter(tenant, threadId, seq));
    return this.#rollout.hasCommitAfter(tenant, threadId, seq);
  }

  #headFor(tenant: string, threadId: string): Promise<number> | undefined {
    const head = this.#heads?.head(tenant, threadId);
    // Settled by #behind; a source that fails falls back to the existence check there.
    head?.catch(() => {});
    return head;
  }

  /** The thread a read found, or its 404; a thread with a tombstone behind it gets its sweep finished. */
  #require(tenant: string, thread: ThreadJson | null, threadId: string, minSeq: number | undefined): ThreadJson {
    if (thread?.lifeStart !== undefined) this.#touchedLife(tenant, threadId, thread.lifeStart);
    return requireThread(thread, threadId, minSeq);
  }

  async readThread(
    tenant: string,
    threadId: string,
    options: { consistency: Consistency; minSeq?: number },
  ): Promise<ReadResult> {
    // A strong read asks for the head alongside the cache read: one round trip, not two.
    const head = options.consistency === "strong" ? this.#headFor(tenant, threadId) : undefined;
    const cached = await this.#guard.try("readThread", (cache) => cache.readThreadJson(tenant, threadId));
    if (!cached.ok) {
      const state = await this.#rollout.load(tenant, threadId);
      return { thread: this.#require(tenant, jsonOf(state), threadId, options.minSeq), source: "rollout" };
    }
    const thread = cached.value;
    const satisfiesMinSeq = options.minSeq === undefined || (thread !== null && thread.seq >= options.minSeq);
    if (options.consistency === "cache" && thread && satisfiesMinSeq) {
      return { thread: this.#require(tenant, thread, threadId, options.minSeq), source: "cache" };
    }

    const seq = thread?.seq ?? 0;
    // A row this old may have missed a delete whose keys are freed by now: the life marker tells.
    const old = thread !== null && this.#now().getTime() - Date.parse(thread.updatedAt) > this.#freshMs;
    const behind = old
      ? this.#repairer.behind(tenant, threadId, seq)
      : this.#behind(tenant, threadId, seq, head ?? this.#headFor(tenant, threadId));
    if (!(await behind)) {
      return { thread: this.#require(tenant, thread, threadId, options.minSeq), source: "cache" };
    }
    // The cache lags the head source (the sequencer applies it after answering): its state is the answer.
    if (this.#heads?.thread) {
      const ahead = await this.#heads.thread(tenant, threadId).catch(() => undefined);
      if (ahead !== undefined) {
        return { thread: this.#require(tenant, ahead, threadId, options.minSeq), source: "rollout" };
      }
    }
    // The cache is behind the rollout: answer from the rollout and repair on the way.
    const repaired = await this.#guard.try(
      "repair",
      () => this.#repairer.repairRead(tenant, threadId, thread && parseThreadJson(thread)),
    );
    if (repaired.ok) {
      return { thread: this.#require(tenant, jsonOf(repaired.value), threadId, options.minSeq), source: "repaired" };
    }
    const fresh = await this.#rollout.load(tenant, threadId);
    return { thread: this.#require(tenant, jsonOf(fresh), threadId, options.minSeq), source: "rollout" };
  }

  /**
   * The thread at its head, as a strong read sees it (a fork's source): with a head source
   * that holds the thread (Workers: its sequencer, confirmed against the rollout at most
   * a second ago), from it alone, one call instead of a cache read and a head.
   */
  async headThread(tenant: string, threadId: string): Promise<ThreadJson> {
    if (this.#heads?.thread) {
      const held = await this.#heads.thread(tenant, threadId).catch(() => undefined);
      if (held !== undefined) return this.#require(tenant, held, threadId, undefined);
    }
    return (await this.readThread(tenant, threadId, { consistency: "strong" })).thread;
  }

  async getArtifact(
    tenant: string,
    threadId: string,
    artifactId: string,
  ): Promise<{ artifact: Artifact; source: ReadSource }> {
    const head = this.#headFor(tenant, threadId);
    const cached = await this.#guard.try("getArtifact", (cache) => cache.getArtifact(tenant, threadId, artifactId));
    // Found, or no thread at all: the cache answers. Not found in a thread: the thread read
    // below tells an unknown artifact from a deleted thread (which is no thread).
    if (
      cached.ok && (cached.value.artifact !== null || cached.value.seq === 0) &&
      !(await this.#behind(tenant, threadId, cached.value.seq, head))
    ) {
      if (cached.value.seq === 0) throw new ProblemError("thread_not_found", `no thread ${threadId}`);
      return { artifact: requireArtifact(cached.value.artifact, artifactId), source: "cache" };
    }
    const { thread, source } = await this.readThread(tenant, threadId, { consistency: "strong" });
    const artifact = parseThreadJson(thread).artifacts.find((a) => a.id === artifactId) ?? null;
    return { artifact: requireArtifact(artifact, artifactId), source };
  }

  async listThreads(tenant: string, page: { after: ThreadCursor | null; limit: number }): Promise<ThreadPage> {
    const listed = await this.#guard.try(
      "listThreads",
      (cache) => cache.listThreads(tenant, { after: page.after, limit: page.limit + 1 }),
    );
    if (!listed.ok) {
      throw new ProblemError("unavailable", "the thread list needs the cache, which is unreachable; retry", {
        retryAfterSeconds: 1,
      });
    }
    const threads = listed.value.slice(0, page.limit);
    const last = threads[threads.length - 1];
    const next = listed.value.length > page.limit && last
      ? { updatedAt: last.updatedAt, threadId: last.threadId }
      : null;
    return { threads, next };
  }

  /** The tenant's threads changed since `page.since`, newest first, deleted ones included (the cache's rows only). */
  async changedThreads(
    tenant: string,
    page: { since: string; after: ThreadCursor | null; limit: number },
  ): Promise<ChangedThread[]> {
    const listed = await this.#guard.try("changedThreads", (cache) => cache.changedThreads(tenant, page));
    if (!listed.ok) {
      throw new ProblemError("unavailable", "the changed threads need the cache, which is unreachable", {
        retryAfterSeconds: 1,
      });
    }
    return listed.value;
  }

  /**
   * The thread's event log after `afterSeq` (at most about `limit`, contiguous): from the
   * cache's log, from the rollout for seqs the log does not hold (a thread installed
   * from a snapshot) or while the cache is down. An empty page from the cache is checked
   * against the rollout, and a cache found behind is repaired, so events written by a
   * process whose cache was down still arrive.
   */
  async readEvents(tenant: string, threadId: string, afterSeq: number, limit: number): Promise<LogEvent[]> {
    const page = await this.#guard.try("events", (cache) => cache.events(tenant, threadId, afterSeq, limit));
    if (!page.ok) return this.#rolloutEvents(tenant, threadId, afterSeq, limit);
    const { seq, floor, events, lifeStart } = page.value;
    // Before the current life: its tombstone is the next event (the log holds nothing earlier).
    if (afterSeq < lifeStart - 1) return this.readEvents(tenant, threadId, lifeStart - 1, limit);
    if (floor > afterSeq) {
      return (await this.#rolloutEvents(tenant, threadId, afterSeq, Math.min(limit, floor - afterSeq))).filter((e) =>
        e.seq <= floor
      );
    }
    // The cache stands at a commit boundary: one existence check tells whether it is behind.
    if (events.length > 0 || !(await this.#rollout.hasCommitAfter(tenant, threadId, seq))) return events;
    const repaired = await this.#guard.try("repair", () => this.#repairer.repairFrom(tenant, threadId, seq));
    if (repaired.ok) {
      const again = await this.#guard.try("events", (cache) => cache.events(tenant, threadId, afterSeq, limit));
      if (again.ok && again.value.floor <= afterSeq && again.value.events.length > 0) return again.value.events;
    }
    return this.#rolloutEvents(tenant, threadId, afterSeq, limit);
  }

  /**
   * The event logs of several threads of one tenant, the cache's part in ONE query (a
   * many-threads stream's catch-up and safety poll on Workers): one page per read, as
   * `readEvents` would give it, except that an empty page is taken at its word unless
   * the read's `head` (the thread's head as its sequencer told it) says the log goes
   * further, and then the missing commits are read from the rollout. So the reads of a
   * stream whose heads come from the sequencer cost no existence check per thread. A
   * page the cache does not hold (before its floor, or a life's start) is read as
   * `readEvents` reads it; the cache down, every read goes to the rollout.
   */
  async readEventsMany(
    tenant: string,
    reads: readonly { threadId: string; afterSeq: number; head?: number }[],
    limit: number,
  ): Promise<LogEvent[][]> {
    const pages = await this.#guard.try("eventsMany", (cache) => cache.eventsMany(tenant, reads, limit));
    return Promise.all(reads.map((read, i) => {
      if (!pages.ok) return this.#rolloutEvents(tenant, read.threadId, read.afterSeq, limit);
      const { floor, lifeStart, events } = pages.value[i] as EventPage;
      if (read.afterSeq < lifeStart - 1 || floor > read.afterSeq) {
        return this.readEvents(tenant, read.threadId, read.afterSeq, limit);
      }
      if (events.length === 0 && read.head !== undefined && read.head > read.afterSeq) {
        // The cache lags the sequencer (its apply follows the answer by a few ms, or libSQL failed it).
        return this.#rolloutEvents(tenant, read.threadId, read.afterSeq, limit);
      }
      return events;
    }));
  }

  /** The seq of the thread's last commit, 0 if it has none. */
  async head(tenant: string, threadId: string): Promise<number> {
    const cached = await this.#guard.try("seq", (cache) => cache.seq(tenant, threadId));
    if (cached.ok && !(await this.#rollout.hasCommitAfter(tenant, threadId, cached.value))) return cached.value;
    return (await this.#rollout.load(tenant, threadId))?.seq ?? 0;
  }

  async #rolloutEvents(tenant: string, threadId: string, afterSeq: number, limit: number): Promise<LogEvent[]> {
    return (await this.#rollout.patchesAfter(tenant, threadId, afterSeq, limit)).map(logEventOf);
  }
}

function requireThread(thread: ThreadJson | null, threadId: string, minSeq: number | undefined): ThreadJson {
  // A deleted thread answers exactly as one that never existed.
  if (!thread || thread.deleted) throw new ProblemError("thread_not_found", `no thread ${threadId}`);
  if (minSeq !== undefined && thread.seq < minSeq) {
    throw new ProblemError(
      "thread_not_found",
      `thread ${threadId} has no patch ${minSeq} (its rollout is at ${thread.seq})`,
    );
  }
  return thread;
}

function jsonOf(state: ThreadState | null): ThreadJson | null {
  return state && toThreadJson(state);
}

function requireArtifact(artifact: Artifact | null, artifactId: string): Artifact {
  if (!artifact) throw new ProblemError("artifact_not_found", `no artifact ${artifactId} in this thread`);
  return artifact;
}
