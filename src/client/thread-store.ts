/**
 * Live thread stores for UIs (React's useSyncExternalStore, or anything that can take a
 * "something changed" callback): `watchThread` reads a thread, follows its events,
 * reconnects and resumes, and applies optimistic writes; `watchThreads` follows many
 * threads over one connection. What they show is computed by thread-state.ts alone.
 * Web-standard only (fetch, streams, crypto.getRandomValues): browsers, Node, Deno, workerd.
 */
import type { ThreadView } from "../model/artifact.ts";
import type { JsonValue } from "../model/json.ts";
import type { ArtifactEvent, ThreadDeletedEvent } from "../model/patch.ts";
import { ArtifactsApiError, isTransient } from "./errors.ts";
import type { SubscribeOptions, WriteResponse } from "./index.ts";
import {
  applyEvent,
  type ConfirmedThread,
  emptyThread,
  findCreated,
  fromView,
  type LiveArtifact,
  optimisticArtifacts,
  type PendingWrite,
  threadViewOf,
  unsettled,
  type Write,
  type WriteAnswer,
} from "./thread-state.ts";

export type { LiveArtifact };

/**
 * - `connecting`: the first read, or the first connection of the stream, is not done yet
 *   (`error` holds the last failure while it is retried);
 * - `live`: the thread was read and its stream is connected;
 * - `reconnecting`: the stream (or a re-read) failed and is being retried with backoff;
 *   the thread shown is the last known state (`error` holds the failure);
 * - `deleted`: the thread's last event was its delete (connected or not): no artifacts,
 *   `seq` is the delete's. The store keeps following: a next life makes it `live` again;
 * - `error`: the server refused the read or the stream for good (`401`, `403`, a `400`
 *   for a bad thread id, a resume refused twice in a row); nothing is retried.
 */
export type StoreStatus = "connecting" | "live" | "reconnecting" | "deleted" | "error";

/**
 * A thread as a store shows it: a ThreadView whose artifacts may be `pending`. The thread
 * and its array are frozen; the artifacts are shared with the store (and with the write
 * answers): treat them as read-only.
 */
export type LiveThread = Omit<ThreadView, "artifacts"> & { artifacts: LiveArtifact[] };

/** A write of the store that failed and was rolled back. */
export interface WriteFailure {
  readonly op: Write["op"];
  /** The artifact it was for (a create's pending id). */
  readonly artifactId: string;
  /** What its promise was rejected with: an ArtifactsApiError, or the network error. */
  readonly error: unknown;
}

/**
 * What `getSnapshot()` returns: the same (frozen) object until something changes.
 * `thread` is the confirmed state with the store's unconfirmed writes replayed on top
 * (see thread-state.ts `optimisticArtifacts`); `seq` is the confirmed state's seq.
 */
export interface ThreadSnapshot {
  readonly status: StoreStatus;
  /**
   * Null until the first read answered. A thread that does not exist (`404`) is an empty
   * thread at seq 0 (`createdAt` and `updatedAt` are `""` while it has no life).
   */
  readonly thread: LiveThread | null;
  readonly seq: number;
  /** Why the status is `error`; while `connecting` or `reconnecting`, the last failure. */
  readonly error?: unknown;
  /** The last write that failed and was rolled back; cleared when a later write succeeds. */
  readonly writeError?: WriteFailure;
  /** Writes asked for and not yet answered (queued or in flight). */
  readonly pendingWrites: number;
}

export interface WatchOptions {
  /** Backoff of reconnects, re-reads and write retries (ms; default 250 and 10,000). */
  minBackoffMs?: number;
  /** Also caps the server's `retry:`: a store never waits longer than this to reconnect. */
  maxBackoffMs?: number;
  /**
   * How many times a write is sent again, with the same Idempotency-Key, after a network
   * error or a `5xx`/`408` (default 3; a `Retry-After` sets the wait, up to maxBackoffMs).
   */
  writeRetries?: number;
}

/** A write whose promise also names the pending id its artifact shows under until the answer. */
export type PendingCreate = Promise<WriteResponse> & { readonly pendingId: string };

export interface RemoveResponse {
  removed: { id: string; seq: number };
  thread: { id: string; rolloutSeq: number };
}

/**
 * One thread, kept up to date. Writes go out one at a time, in the order they were asked
 * for; each changes the snapshot at once and is confirmed by its answer or its event
 * (whichever comes first), or rolled back when it fails. Artifact ids in writes may be
 * pending ids of creates asked for earlier.
 */
export interface ThreadStore {
  getSnapshot(): ThreadSnapshot;
  /** `listener` is called (at most once per microtask) after each change; returns the unsubscribe. */
  subscribe(listener: () => void): () => void;
  /** Stops the stream and every retry; writes not yet sent are rejected (AbortError); no listener is called again. */
  close(): void;
  createArtifact(input: { artifactType: string; payload: JsonValue; identityKey?: string }): PendingCreate;
  updateArtifact(artifactId: string, payload: JsonValue, options?: { ifVersion?: number }): Promise<WriteResponse>;
  /** An RFC 7396 merge patch of the payload, applied locally at once and by the server on its own state. */
  mergeArtifact(artifactId: string, patch: JsonValue, options?: { ifVersion?: number }): Promise<WriteResponse>;
  removeArtifact(artifactId: string, options?: { ifVersion?: number }): Promise<RemoveResponse>;
}

/**
 * What `watchThreads(...).getSnapshot()` returns: the same (frozen) object until something
 * changes. `threads` has an entry per watched id (in the order given), each a
 * ThreadSnapshot (its own status: `connecting` until read, then as the connection and the
 * thread are; never any pending writes), which stays the same object until that thread
 * or the connection's status changes.
 */
export interface ThreadsSnapshot {
  /** The connection's: `connecting` until every thread was read and the stream connected; no `deleted`. */
  readonly status: Exclude<StoreStatus, "deleted">;
  readonly threads: Readonly<Record<string, ThreadSnapshot>>;
  readonly error?: unknown;
}

/** Many threads over one `GET /v1/events` connection (up to 100). Read-only. */
export interface ThreadsStore {
  getSnapshot(): ThreadsSnapshot;
  subscribe(listener: () => void): () => void;
  close(): void;
}

/** What the stores need of the client (src/client/index.ts gives itself). */
export interface StoreTransport {
  readThread(threadId: string): Promise<ThreadView>;
  subscribe(threadId: string, subscription: SubscribeOptions): Promise<void>;
  subscribeMany(
    threads: ReadonlyArray<{ threadId: string; since: number }>,
    subscription: Omit<SubscribeOptions, "since">,
  ): Promise<void>;
  createArtifact(
    threadId: string,
    input: { artifactType: string; payload: JsonValue; identityKey?: string },
    options: { idempotencyKey?: string },
  ): Promise<WriteResponse>;
  updateArtifact(
    threadId: string,
    artifactId: string,
    payload: JsonValue,
    options: { ifVersion?: number; idempotencyKey?: string },
  ): Promise<WriteResponse>;
  mergeArtifact(
    threadId: string,
    artifactId: string,
    patch: JsonValue,
    options: { ifVersion?: number; idempotencyKey?: string },
  ): Promise<WriteResponse>;
  removeArtifact(
    threadId: string,
    artifactId: string,
    options: { ifVersion?: number; idempotencyKey?: string },
  ): Promise<RemoveResponse>;
}

/** The most threads one `/v1/events` connection follows (API.md "Many threads on one stream"). */
export const MAX_WATCHED_THREADS = 100;

// Plain objects of arrow functions: `useSyncExternalStore(store.subscribe, store.getSnapshot)`
// passes the methods unbound.

export function watchThread(transport: StoreTransport, threadId: string, options: WatchOptions = {}): ThreadStore {
  const store = new SingleThreadStore(transport, threadId, options);
  return {
    getSnapshot: () => store.getSnapshot(),
    subscribe: (listener) => store.subscribe(listener),
    close: () => store.close(),
    createArtifact: (input) => store.createArtifact(input),
    updateArtifact: (artifactId, payload, options) => store.updateArtifact(artifactId, payload, options),
    mergeArtifact: (artifactId, patch, options) => store.mergeArtifact(artifactId, patch, options),
    removeArtifact: (artifactId, options) => store.removeArtifact(artifactId, options),
  };
}

export function watchThreads(
  transport: StoreTransport,
  threadIds: readonly string[],
  options: WatchOptions = {},
): ThreadsStore {
  const store = new ManyThreadsStore(transport, [...new Set(threadIds)], options);
  return {
    getSnapshot: () => store.getSnapshot(),
    subscribe: (listener) => store.subscribe(listener),
    close: () => store.close(),
  };
}

/** A store's listeners, called once per microtask however many changes it had. */
class Listeners {
  readonly #listeners = new Set<() => void>();
  #scheduled = false;
  #closed = false;

  add(listener: () => void): () => void {
    if (this.#closed) return () => {};
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  changed(): void {
    if (this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      for (const listener of [...this.#listeners]) {
        if (this.#closed) return;
        // One that unsubscribed meanwhile is not called.
        if (this.#listeners.has(listener)) listener();
      }
    });
  }

  close(): void {
    this.#closed = true;
    this.#listeners.clear();
  }
}

/** The connection side both stores share: status inputs, backoff, the stop signal. */
abstract class Follower {
  protected readonly listeners = new Listeners();
  protected readonly stop = new AbortController();
  protected readonly minBackoff: number;
  protected readonly maxBackoff: number;
  /** The stream is open (set by onOpen, cleared by a failure). */
  protected connected = false;
  protected everConnected = false;
  protected fatal: { error: unknown } | null = null;
  protected lastError: unknown = undefined;

  constructor(options: WatchOptions) {
    this.minBackoff = options.minBackoffMs ?? 250;
    this.maxBackoff = Math.max(this.minBackoff, options.maxBackoffMs ?? 10_000);
  }

  get closed(): boolean {
    return this.stop.signal.aborted;
  }

  subscribe(listener: () => void): () => void {
    return this.listeners.add(listener);
  }

  protected abstract changed(): void;

  /** The connection's part of a status; `read` tells whether the reads it needs are done. */
  protected connectionStatus(read: boolean): Exclude<StoreStatus, "deleted"> {
    if (this.fatal) return "error";
    if (!read) return this.everConnected ? "reconnecting" : "connecting";
    if (this.connected) return "live";
    return this.everConnected ? "reconnecting" : "connecting";
  }

  protected errorField(): { error?: unknown } {
    if (this.fatal) return { error: this.fatal.error };
    return this.lastError === undefined ? {} : { error: this.lastError };
  }

  protected streamCallbacks(): Pick<SubscribeOptions, "onOpen" | "onError" | "minBackoffMs" | "maxBackoffMs"> {
    return {
      minBackoffMs: this.minBackoff,
      maxBackoffMs: this.maxBackoff,
      onOpen: () => {
        this.connected = true;
        this.everConnected = true;
        this.lastError = undefined;
        this.changed();
      },
      onError: (error) => {
        this.connected = false;
        this.lastError = error;
        this.changed();
      },
    };
  }

  protected fail(error: unknown): void {
    this.fatal = { error };
    this.connected = false;
    this.changed();
  }

  protected backoff(failures: number): number {
    const ceiling = Math.min(this.maxBackoff, this.minBackoff * 2 ** Math.min(failures, 16));
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  /**
   * Reads a thread until it answers: a `404 thread_not_found` is the empty thread; another
   * `4xx` (but 408 and 429) throws (retrying cannot help); anything else is retried with
   * backoff. Null when the store closed meanwhile.
   */
  protected async readUntilAnswered(
    transport: StoreTransport,
    threadId: string,
  ): Promise<ConfirmedThread | null> {
    for (let failures = 0; !this.closed; failures++) {
      try {
        return fromView(await transport.readThread(threadId));
      } catch (error) {
        if (error instanceof ArtifactsApiError && error.status === 404 && error.code === "thread_not_found") {
          return emptyThread(threadId);
        }
        if (this.closed) return null;
        if (isFinal(error)) throw error;
        this.connected = false;
        this.lastError = error;
        this.changed();
        await delay(retryAfter(error, this.maxBackoff) ?? this.backoff(failures), this.stop.signal);
      }
    }
    return null;
  }
}

/** A write in the queue: what PendingWrite says, plus how to send it and whom to tell. */
interface QueuedWrite extends PendingWrite {
  claimedId?: string;
  answer?: WriteAnswer;
  /** The Idempotency-Key of every attempt of this write. */
  readonly key: string;
  /** Set when it went out: the artifact ids the state held then (for creates). */
  sent?: { known: ReadonlySet<string> };
  readonly send: (key: string) => Promise<{ value: unknown; answer: WriteAnswer }>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

class SingleThreadStore extends Follower implements ThreadStore {
  readonly #transport: StoreTransport;
  readonly #threadId: string;
  readonly #writeRetries: number;
  #confirmed: ConfirmedThread;
  #read = false;
  #writes: QueuedWrite[] = [];
  /** Pending ids of answered creates → the server's ids. */
  readonly #aliases = new Map<string, string>();
  /** Pending ids of creates that failed: writes to them fail without being sent. */
  readonly #failedCreates = new Set<string>();
  #writeError: WriteFailure | undefined;
  #sending = false;
  /** Bumped on every change of `#writes` (or of a write): the view depends on it. */
  #writesVersion = 0;
  #view: { confirmed: ConfirmedThread; writes: number; thread: LiveThread } | null = null;
  #snapshot: ThreadSnapshot | null = null;
  #previous: ThreadSnapshot | null = null;

  constructor(transport: StoreTransport, threadId: string, options: WatchOptions) {
    super(options);
    this.#transport = transport;
    this.#threadId = threadId;
    this.#writeRetries = options.writeRetries ?? 3;
    this.#confirmed = emptyThread(threadId);
    void this.#run();
  }

  getSnapshot(): ThreadSnapshot {
    if (this.#snapshot) return this.#snapshot;
    const confirmed = this.#confirmed;
    let thread: LiveThread | null = null;
    if (this.#read) {
      // The view is recomputed only when the state or the writes changed.
      const view = this.#view;
      if (view && view.confirmed === confirmed && view.writes === this.#writesVersion) {
        thread = view.thread;
      } else {
        const artifacts = optimisticArtifacts(confirmed, this.#writes, this.#aliases);
        thread = Object.freeze(threadViewOf(confirmed, Object.freeze(artifacts) as LiveArtifact[]));
        this.#view = { confirmed, writes: this.#writesVersion, thread };
      }
    }
    const status = this.fatal || !this.#read || !confirmed.deleted ? this.connectionStatus(this.#read) : "deleted";
    const next: ThreadSnapshot = Object.freeze({
      status,
      thread,
      seq: confirmed.seq,
      ...this.errorField(),
      ...(this.#writeError ? { writeError: this.#writeError } : {}),
      pendingWrites: this.#writes.filter((w) => !w.answer).length,
    });
    // Nothing the user can see changed (a reconnect that changed no status): the same object.
    this.#snapshot = this.#previous && sameSnapshot(this.#previous, next) ? this.#previous : next;
    this.#previous = this.#snapshot;
    return this.#snapshot;
  }

  close(): void {
    if (this.closed) return;
    this.stop.abort();
    this.listeners.close();
    // Not sent yet: never will be. The one in flight settles with its answer (no retries now).
    for (const write of this.#writes.filter((w) => !w.sent && !w.answer)) {
      write.reject(new DOMException("the thread store was closed", "AbortError"));
    }
    this.#writes = this.#writes.filter((w) => w.sent || w.answer);
  }

  protected changed(): void {
    this.#snapshot = null;
    this.listeners.changed();
  }

  // --- following the thread ---

  /** Read, follow from the read's seq; read again on a gap or a resume the server refuses. */
  async #run(): Promise<void> {
    let refusals = 0;
    let resyncs = 0;
    while (!this.closed) {
      let state: ConfirmedThread | null;
      try {
        state = await this.readUntilAnswered(this.#transport, this.#threadId);
      } catch (error) {
        return this.fail(error);
      }
      if (!state || this.closed) return;
      this.lastError = undefined;
      this.#read = true;
      this.#setConfirmed(state);
      const outcome = await this.#follow();
      if (outcome.kind === "closed") return;
      if (outcome.kind === "refused") {
        // A resume the server cannot serve: read again, once; refused again right after a read, it is for good.
        refusals = outcome.opened ? 1 : refusals + 1;
        if (refusals > 1 || isFinal(outcome.error, true)) return this.fail(outcome.error);
        continue;
      }
      // A gap: read again at once, but not in a tight loop if the server keeps skipping.
      resyncs = outcome.applied ? 0 : resyncs + 1;
      if (resyncs > 0) await delay(this.backoff(resyncs - 1), this.stop.signal);
    }
  }

  async #follow(): Promise<
    { kind: "closed" } | { kind: "gap"; applied: boolean } | { kind: "refused"; error: unknown; opened: boolean }
  > {
    if (this.closed) return { kind: "closed" };
    const stream = new AbortController();
    const stopStream = () => stream.abort();
    this.stop.signal.addEventListener("abort", stopStream, { once: true });
    let gap = false;
    let applied = false;
    let opened = false;
    const callbacks = this.streamCallbacks();
    const onEvent = (event: ArtifactEvent | ThreadDeletedEvent) => {
      // Messages of a chunk still come after an abort: they belong to the stream given up.
      if (stream.signal.aborted) return;
      const result = applyEvent(this.#confirmed, event);
      if (result.kind === "duplicate") return;
      if (result.kind === "gap") {
        gap = true;
        stream.abort();
        return;
      }
      applied = true;
      this.#setConfirmed(result.state);
    };
    try {
      await this.#transport.subscribe(this.#threadId, {
        ...callbacks,
        onOpen: () => {
          opened = true;
          callbacks.onOpen?.();
        },
        since: this.#confirmed.seq,
        signal: stream.signal,
        onEvent,
        onDeleted: onEvent,
      });
    } catch (error) {
      if (!this.closed) return { kind: "refused", error, opened };
    } finally {
      this.stop.signal.removeEventListener("abort", stopStream);
    }
    if (this.closed || !gap) return { kind: "closed" };
    return { kind: "gap", applied };
  }

  /** The confirmed state moved: settle the writes it reached, match an in-flight create to its artifact. */
  #setConfirmed(state: ConfirmedThread): void {
    this.#confirmed = state;
    this.#writes = unsettled(state, this.#writes);
    this.#writesVersion++;
    const inFlight = this.#writes.find((w) => w.sent && !w.answer);
    if (inFlight?.write.op === "create" && inFlight.sent && inFlight.claimedId === undefined) {
      const taken = new Set<string>();
      for (const w of this.#writes) {
        if (w.claimedId !== undefined) taken.add(w.claimedId);
        if (w.answer && "artifact" in w.answer) taken.add(w.answer.artifact.id);
      }
      const id = findCreated(state, inFlight.write, inFlight.sent.known, taken);
      if (id !== undefined) inFlight.claimedId = id;
    }
    this.changed();
  }

  // --- writes ---

  createArtifact(input: { artifactType: string; payload: JsonValue; identityKey?: string }): PendingCreate {
    const pendingId = `pending:${randomUuid()}`;
    const write: Write = {
      op: "create",
      artifactId: pendingId,
      artifactType: input.artifactType,
      identityKey: input.identityKey ?? null,
      payload: input.payload,
      at: new Date().toISOString(),
    };
    const promise = this.#enqueue<WriteResponse>(write, async (idempotencyKey) => {
      const value = await this.#transport.createArtifact(this.#threadId, input, { idempotencyKey });
      return { value, answer: { seq: value.artifact.seq, artifact: value.artifact } };
    });
    return Object.assign(promise, { pendingId });
  }

  updateArtifact(artifactId: string, payload: JsonValue, options: { ifVersion?: number } = {}): Promise<WriteResponse> {
    return this.#enqueue<WriteResponse>({ op: "update", artifactId, payload }, async (idempotencyKey) => {
      const id = this.#serverId(artifactId);
      const value = await this.#transport.updateArtifact(this.#threadId, id, payload, { ...options, idempotencyKey });
      return { value, answer: { seq: value.artifact.seq, artifact: value.artifact } };
    });
  }

  mergeArtifact(artifactId: string, patch: JsonValue, options: { ifVersion?: number } = {}): Promise<WriteResponse> {
    return this.#enqueue<WriteResponse>({ op: "merge", artifactId, patch }, async (idempotencyKey) => {
      const id = this.#serverId(artifactId);
      const value = await this.#transport.mergeArtifact(this.#threadId, id, patch, { ...options, idempotencyKey });
      return { value, answer: { seq: value.artifact.seq, artifact: value.artifact } };
    });
  }

  removeArtifact(artifactId: string, options: { ifVersion?: number } = {}): Promise<RemoveResponse> {
    return this.#enqueue<RemoveResponse>({ op: "remove", artifactId }, async (idempotencyKey) => {
      const id = this.#serverId(artifactId);
      const value = await this.#transport.removeArtifact(this.#threadId, id, { ...options, idempotencyKey });
      return { value, answer: { seq: value.removed.seq, removedId: value.removed.id } };
    });
  }

  /** The server's id of an artifact named by the user: a pending id is its create's answer. */
  #serverId(artifactId: string): string {
    const id = this.#aliases.get(artifactId);
    if (id !== undefined) return id;
    if (this.#failedCreates.has(artifactId) || artifactId.startsWith("pending:")) {
      // Never sent: it would name no artifact of the server's.
      throw new ArtifactsApiError(404, "artifact_not_found", `${artifactId} was never created: its create failed`);
    }
    return artifactId;
  }

  #enqueue<T>(write: Write, send: (key: string) => Promise<{ value: T; answer: WriteAnswer }>): Promise<T> {
    if (this.closed) return Promise.reject(new DOMException("the thread store was closed", "AbortError"));
    return new Promise<T>((resolve, reject) => {
      this.#writes.push({
        write,
        key: randomUuid(),
        send,
        resolve: resolve as (value: unknown) => void,
        reject,
      });
      this.#writesVersion++;
      this.changed();
      void this.#pump();
    });
  }

  /** Sends the queued writes one at a time, in order. */
  async #pump(): Promise<void> {
    if (this.#sending) return;
    this.#sending = true;
    try {
      for (;;) {
        const write = this.#writes.find((w) => !w.sent && !w.answer);
        if (!write || this.closed) return;
        write.sent = { known: new Set(this.#confirmed.artifacts.map((a) => a.id)) };
        let outcome: { value: unknown; answer: WriteAnswer };
        try {
          outcome = await this.#sendWithRetries(write);
        } catch (error) {
          this.#rollBack(write, error);
          continue;
        }
        this.#answered(write, outcome);
      }
    } finally {
      this.#sending = false;
    }
  }

  /** The same request, with the same Idempotency-Key, until it is answered or retrying cannot help. */
  async #sendWithRetries(write: QueuedWrite): Promise<{ value: unknown; answer: WriteAnswer }> {
    for (let attempt = 0;; attempt++) {
      try {
        return await write.send(write.key);
      } catch (error) {
        if (this.closed || attempt >= this.#writeRetries || !isTransient(error)) throw error;
        await delay(retryAfter(error, this.maxBackoff) ?? this.backoff(attempt), this.stop.signal);
        if (this.closed) throw error;
      }
    }
  }

  #answered(write: QueuedWrite, outcome: { value: unknown; answer: WriteAnswer }): void {
    write.answer = outcome.answer;
    write.claimedId = undefined;
    if (write.write.op === "create" && "artifact" in outcome.answer) {
      this.#aliases.set(write.write.artifactId, outcome.answer.artifact.id);
    }
    this.#writeError = undefined;
    this.#writes = unsettled(this.#confirmed, this.#writes);
    this.#writesVersion++;
    this.changed();
    write.resolve(outcome.value);
  }

  #rollBack(write: QueuedWrite, error: unknown): void {
    this.#writes = this.#writes.filter((w) => w !== write);
    this.#writesVersion++;
    if (write.write.op === "create") this.#failedCreates.add(write.write.artifactId);
    this.#writeError = Object.freeze({ op: write.write.op, artifactId: write.write.artifactId, error });
    this.changed();
    write.reject(error);
  }
}

/** One watched thread of a ManyThreadsStore. */
interface Watched {
  confirmed: ConfirmedThread;
  read: boolean;
  snapshot: ThreadSnapshot | null;
}

class ManyThreadsStore extends Follower implements ThreadsStore {
  readonly #transport: StoreTransport;
  readonly #threads: Map<string, Watched>;
  #snapshot: ThreadsSnapshot | null = null;

  constructor(transport: StoreTransport, threadIds: readonly string[], options: WatchOptions) {
    super(options);
    this.#transport = transport;
    this.#threads = new Map(threadIds.map((id) => [id, { confirmed: emptyThread(id), read: false, snapshot: null }]));
    void this.#run();
  }

  getSnapshot(): ThreadsSnapshot {
    if (this.#snapshot) return this.#snapshot;
    const allRead = [...this.#threads.values()].every((t) => t.read);
    const status = this.#threads.size === 0 && !this.fatal ? "live" : this.connectionStatus(allRead);
    const error = this.errorField();
    const threads: Record<string, ThreadSnapshot> = {};
    for (const [id, watched] of this.#threads) {
      const own: StoreStatus = this.fatal || !watched.read
        ? this.connectionStatus(watched.read)
        : watched.confirmed.deleted
        ? "deleted"
        : status;
      let snapshot = watched.snapshot;
      if (!snapshot || snapshot.status !== own || snapshot.error !== error.error) {
        snapshot = watched.snapshot = Object.freeze({
          status: own,
          thread: watched.read
            ? Object.freeze(
              threadViewOf(watched.confirmed, Object.freeze(watched.confirmed.artifacts) as LiveArtifact[]),
            )
            : null,
          seq: watched.confirmed.seq,
          ...error,
          pendingWrites: 0,
        });
      }
      threads[id] = snapshot;
    }
    this.#snapshot = Object.freeze({ status, threads: Object.freeze(threads), ...error });
    return this.#snapshot;
  }

  close(): void {
    if (this.closed) return;
    this.stop.abort();
    this.listeners.close();
  }

  protected changed(): void {
    this.#snapshot = null;
    this.listeners.changed();
  }

  /** Read the threads (all at first, those with a gap later), follow them all from their seqs. */
  async #run(): Promise<void> {
    if (this.#threads.size === 0) return;
    if (this.#threads.size > MAX_WATCHED_THREADS) {
      return this.fail(new RangeError(`watchThreads follows at most ${MAX_WATCHED_THREADS} threads`));
    }
    let toRead = [...this.#threads.keys()];
    let refusals = 0;
    let resyncs = 0;
    while (!this.closed) {
      try {
        await this.#readAll(toRead);
      } catch (error) {
        return this.fail(error);
      }
      if (this.closed) return;
      this.lastError = undefined;
      this.changed();
      const outcome = await this.#follow();
      if (outcome.kind === "closed") return;
      if (outcome.kind === "refused") {
        // A resume token the server refuses (or a list it cannot serve): read everything
        // again and start without a token; refused again at once, it is for good.
        refusals = outcome.opened ? 1 : refusals + 1;
        if (refusals > 1 || isFinal(outcome.error, true)) return this.fail(outcome.error);
        toRead = [...this.#threads.keys()];
        continue;
      }
      toRead = outcome.gaps;
      resyncs = outcome.applied ? 0 : resyncs + 1;
      if (resyncs > 0) await delay(this.backoff(resyncs - 1), this.stop.signal);
    }
  }

  /** Reads `ids`, six at a time (a browser's connections per origin). */
  async #readAll(ids: readonly string[]): Promise<void> {
    const queue = [...ids];
    const worker = async () => {
      for (let id = queue.shift(); id !== undefined && !this.closed; id = queue.shift()) {
        const state = await this.readUntilAnswered(this.#transport, id);
        const watched = this.#threads.get(id);
        if (!state || !watched) return;
        watched.confirmed = state;
        watched.read = true;
        watched.snapshot = null;
        this.changed();
      }
    };
    await Promise.all(Array.from({ length: Math.min(6, queue.length) }, worker));
  }

  async #follow(): Promise<
    { kind: "closed" } | { kind: "gap"; gaps: string[]; applied: boolean } | {
      kind: "refused";
      error: unknown;
      opened: boolean;
    }
  > {
    if (this.closed) return { kind: "closed" };
    const stream = new AbortController();
    const stopStream = () => stream.abort();
    this.stop.signal.addEventListener("abort", stopStream, { once: true });
    const gaps = new Set<string>();
    let applied = false;
    let opened = false;
    const callbacks = this.streamCallbacks();
    const onEvent = (event: ArtifactEvent | ThreadDeletedEvent) => {
      if (stream.signal.aborted) return;
      const watched = this.#threads.get(event.threadId);
      if (!watched) return;
      const result = applyEvent(watched.confirmed, event);
      if (result.kind === "duplicate") return;
      if (result.kind === "gap") {
        gaps.add(event.threadId);
        stream.abort();
        return;
      }
      applied = true;
      watched.confirmed = result.state;
      watched.snapshot = null;
      this.changed();
    };
    try {
      await this.#transport.subscribeMany(
        [...this.#threads.values()].map((t) => ({ threadId: t.confirmed.threadId, since: t.confirmed.seq })),
        {
          ...callbacks,
          onOpen: () => {
            opened = true;
            callbacks.onOpen?.();
          },
          signal: stream.signal,
          onEvent,
          onDeleted: onEvent,
        },
      );
    } catch (error) {
      if (!this.closed) return { kind: "refused", error, opened };
    } finally {
      this.stop.signal.removeEventListener("abort", stopStream);
    }
    if (this.closed || gaps.size === 0) return { kind: "closed" };
    return { kind: "gap", gaps: [...gaps], applied };
  }
}

function sameSnapshot(a: ThreadSnapshot, b: ThreadSnapshot): boolean {
  return a.status === b.status && a.thread === b.thread && a.seq === b.seq && a.error === b.error &&
    a.writeError === b.writeError && a.pendingWrites === b.pendingWrites;
}

/**
 * A refusal no retry can change: a `4xx` but `408` and `429`. With `resume`, a stream's
 * refusal, where only `401` and `403` are final: any other `4xx` may be the server unable
 * to serve the resume point, which a fresh read replaces.
 */
function isFinal(error: unknown, resume = false): boolean {
  if (!(error instanceof ArtifactsApiError)) return false;
  if (resume) return error.status === 401 || error.status === 403;
  return error.status >= 400 && error.status < 500 && error.status !== 408 && error.status !== 429;
}

function retryAfter(error: unknown, max: number): number | undefined {
  return error instanceof ArtifactsApiError && error.retryAfterMs !== undefined
    ? Math.min(error.retryAfterMs, max)
    : undefined;
}

/** A random UUID (v4) from getRandomValues: crypto.randomUUID exists only in secure contexts. */
function randomUuid(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = ((bytes[6] as number) & 0x0f) | 0x40;
  bytes[8] = ((bytes[8] as number) & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
