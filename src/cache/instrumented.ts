import type { Artifact, ThreadJson, ThreadState } from "../model/artifact.ts";
import type { Metrics } from "../model/metrics.ts";
import type { Commit } from "../model/patch.ts";
import { measureStoreCall, type StoreOperation, storeOperation } from "../model/store-calls.ts";
import {
  type ArtifactCache,
  type CachedContext,
  CacheUnavailableError,
  type ChangedThread,
  type EventPage,
  type EventRead,
  type TargetLookup,
  type ThreadCursor,
} from "./port.ts";

const APPLY = storeOperation("libsql", "apply");
const INSTALL = storeOperation("libsql", "install");
const SEQ = storeOperation("libsql", "seq");
const READ_THREAD = storeOperation("libsql", "readThread");
const READ_THREAD_JSON = storeOperation("libsql", "readThreadJson");
const WRITE_CONTEXT = storeOperation("libsql", "writeContext");
const GET_ARTIFACT = storeOperation("libsql", "getArtifact");
const LIST_THREADS = storeOperation("libsql", "listThreads");
const CHANGED_THREADS = storeOperation("libsql", "changedThreads");
const EVENTS = storeOperation("libsql", "events");
const EVENTS_MANY = storeOperation("libsql", "eventsMany");
const PING = storeOperation("libsql", "ping");

/**
 * The libSQL cache measured at its port: every call's duration and outcome as
 * `store="libsql"`, `operation` = the port method (each is one batch: one round trip), a
 * client span per call inside a traced request, and whether the cache is up: any answer
 * says up, CacheUnavailableError (unreachable, past its deadline, or its breaker refusing
 * calls after such a failure) says down. A SQL error says neither: libSQL answered.
 * Calls the breaker refuses without asking libSQL are not store requests: they are not
 * timed (their zero durations would hide the real ones), only reported as down.
 */
export function instrumentCache(cache: ArtifactCache, metrics: Metrics): ArtifactCache {
  return new InstrumentedCache(cache, metrics);
}

class InstrumentedCache implements ArtifactCache {
  readonly #cache: ArtifactCache;
  readonly #metrics: Metrics;

  constructor(cache: ArtifactCache, metrics: Metrics) {
    this.#cache = cache;
    this.#metrics = metrics;
  }

  apply(tenant: string, commits: readonly Commit[]): Promise<number> {
    return this.#call(APPLY, () => this.#cache.apply(tenant, commits));
  }

  install(tenant: string, state: ThreadState): Promise<number> {
    return this.#call(INSTALL, () => this.#cache.install(tenant, state));
  }

  seq(tenant: string, threadId: string): Promise<number> {
    return this.#call(SEQ, () => this.#cache.seq(tenant, threadId));
  }

  readThread(tenant: string, threadId: string): Promise<ThreadState | null> {
    return this.#call(READ_THREAD, () => this.#cache.readThread(tenant, threadId));
  }

  readThreadJson(tenant: string, threadId: string): Promise<ThreadJson | null> {
    return this.#call(READ_THREAD_JSON, () => this.#cache.readThreadJson(tenant, threadId));
  }

  writeContext(
    tenant: string,
    threadId: string,
    lookups: readonly TargetLookup[],
    keys?: readonly (string | null)[],
  ): Promise<CachedContext> {
    return this.#call(WRITE_CONTEXT, () => this.#cache.writeContext(tenant, threadId, lookups, keys));
  }

  getArtifact(
    tenant: string,
    threadId: string,
    artifactId: string,
  ): Promise<{ seq: number; artifact: Artifact | null }> {
    return this.#call(GET_ARTIFACT, () => this.#cache.getArtifact(tenant, threadId, artifactId));
  }

  listThreads(tenant: string, page: { after: ThreadCursor | null; limit: number }): Promise<ThreadState[]> {
    return this.#call(LIST_THREADS, () => this.#cache.listThreads(tenant, page));
  }

  changedThreads(
    tenant: string,
    page: { since: string; after: ThreadCursor | null; limit: number },
  ): Promise<ChangedThread[]> {
    return this.#call(CHANGED_THREADS, () => this.#cache.changedThreads(tenant, page));
  }

  events(tenant: string, threadId: string, afterSeq: number, limit: number): Promise<EventPage> {
    return this.#call(EVENTS, () => this.#cache.events(tenant, threadId, afterSeq, limit));
  }

  eventsMany(tenant: string, reads: readonly EventRead[], limit: number): Promise<EventPage[]> {
    return this.#call(EVENTS_MANY, () => this.#cache.eventsMany(tenant, reads, limit));
  }

  ping(): Promise<void> {
    return this.#call(PING, () => this.#cache.ping());
  }

  close(): void {
    this.#cache.close();
  }

  async #call<T>(op: StoreOperation, call: () => Promise<T>): Promise<T> {
    try {
      const result = await measureStoreCall(this.#metrics, op, call, refusedByBreaker);
      this.#metrics.cacheUp(true);
      return result;
    } catch (error) {
      if (error instanceof CacheUnavailableError) this.#metrics.cacheUp(false);
      throw error;
    }
  }
}

/** The breaker's refusal (cache/connection.ts): libSQL was not asked. */
function refusedByBreaker(error: unknown): boolean {
  return error instanceof CacheUnavailableError && error.reported;
}
