/**
 * React hooks over the client's live stores (`thread-artifacts/react`): `useThread` shows
 * one thread and writes to it optimistically, `useThreads` shows many threads over one
 * connection. Both are `useSyncExternalStore` over a store of thread-store.ts, so every
 * component sees the same snapshot in a render (no tearing) and React decides when to
 * re-render.
 *
 * Stores are shared and counted: components showing the same thread with the same client
 * (and options) share one store, hence one read and one event stream. A store is opened
 * on its first subscribe, never during a render (a render may be thrown away, and server
 * rendering never subscribes: no network there), and closed when its last subscriber
 * leaves, one microtask later, so that StrictMode's unsubscribe-and-subscribe-again in
 * development (and a component that moves) keeps the same store instead of reading the
 * thread again.
 *
 * Only `react` is imported, and nothing of the client but its types: the server never
 * loads this module (test/client/react.test.ts bundles the server entries to check).
 */
import { useMemo, useSyncExternalStore } from "react";
import type { ArtifactsClient, PendingCreate, RemoveResponse, WriteResponse } from "./index.ts";
import type { JsonValue } from "../model/json.ts";
import type { ThreadSnapshot, ThreadsSnapshot, ThreadsStore, ThreadStore, WatchOptions } from "./thread-store.ts";

export type {
  LiveArtifact,
  LiveThread,
  StoreStatus,
  ThreadSnapshot,
  ThreadsSnapshot,
  WatchOptions,
  WriteFailure,
} from "./thread-store.ts";

/** The store's writes, bound to the hook's thread: stable across renders while the client and thread stay. */
export interface ThreadWrites {
  /** Shows at once under `pendingId` (the artifact is `pending: true`) until the server answers. */
  createArtifact(input: { artifactType: string; payload: JsonValue; identityKey?: string }): PendingCreate;
  updateArtifact(artifactId: string, payload: JsonValue, options?: { ifVersion?: number }): Promise<WriteResponse>;
  mergeArtifact(artifactId: string, patch: JsonValue, options?: { ifVersion?: number }): Promise<WriteResponse>;
  removeArtifact(artifactId: string, options?: { ifVersion?: number }): Promise<RemoveResponse>;
}

/** What `useThread` returns: the store's snapshot and its writes in one object. */
export type UseThreadResult = ThreadSnapshot & ThreadWrites;

/**
 * The snapshot before the store is subscribed (the first render in a browser) and on the
 * server: the store's own first snapshot, so hydration matches.
 */
export const CONNECTING_SNAPSHOT: ThreadSnapshot = Object.freeze({
  status: "connecting",
  thread: null,
  seq: 0,
  pendingWrites: 0,
});

/**
 * One thread, live: `{ status, thread, seq, error?, writeError?, pendingWrites }` (see
 * ThreadSnapshot) and `createArtifact`, `updateArtifact`, `mergeArtifact`,
 * `removeArtifact`, which change `thread` at once (marked `pending`) and are confirmed or
 * rolled back (then `writeError` says why, and the promise rejects). A new `threadId` (or
 * client, or options by value) is a new store. On the server: CONNECTING_SNAPSHOT, no I/O.
 *
 * @example
 * const client = createArtifactsClient({ baseUrl: "https://artifacts.example.com", token });
 * function Thread({ id }: { id: string }) {
 *   const { status, thread, writeError, createArtifact } = useThread(client, id);
 *   if (!thread) return <p>{status}</p>;
 *   return <ul>{thread.artifacts.map((a) => <li key={a.id}>{a.pending ? "…" : ""}{JSON.stringify(a.payload)}</li>)}</ul>;
 * }
 */
export function useThread(
  client: Pick<ArtifactsClient, "watchThread">,
  threadId: string,
  options?: WatchOptions,
): UseThreadResult {
  // `options` by value: a literal written in the render is the same store.
  const source = useMemo(() => threadSource(client, threadId, options), [client, threadId, optionsKey(options)]);
  const snapshot = useSyncExternalStore(source.subscribe, source.getSnapshot, source.getServerSnapshot);
  return useMemo(() => ({ ...snapshot, ...source.writes }), [snapshot, source]);
}

/**
 * Many threads, live, over one `GET /v1/events` connection (up to 100; read-only): a
 * ThreadsSnapshot whose `threads` has an entry per id. `ids` are compared by value (a
 * new array with the same ids keeps the store). On the server: every thread `connecting`.
 */
export function useThreads(
  client: Pick<ArtifactsClient, "watchThreads">,
  ids: readonly string[],
  options?: WatchOptions,
): ThreadsSnapshot {
  const source = useMemo(() => threadsSource(client, ids, options), [client, JSON.stringify(ids), optionsKey(options)]);
  return useSyncExternalStore(source.subscribe, source.getSnapshot, source.getServerSnapshot);
}

/** What `useSyncExternalStore` takes; stable functions, one source per hook and key. */
export interface ExternalStore<T> {
  subscribe(onChange: () => void): () => void;
  getSnapshot(): T;
  getServerSnapshot(): T;
}

/**
 * useThread's pieces, without React: the shared store of (client, thread, options) as
 * `useSyncExternalStore` wants it, and its writes. Nothing is opened until `subscribe` or
 * a write.
 */
export function threadSource(
  client: Pick<ArtifactsClient, "watchThread">,
  threadId: string,
  options?: WatchOptions,
): ExternalStore<ThreadSnapshot> & { writes: ThreadWrites } {
  const key = `thread\u0000${threadId}\u0000${optionsKey(options)}`;
  const open = () => client.watchThread(threadId, options);
  // A write holds the store until it settles: it works from an effect that runs before the
  // component subscribed, and an unmount does not cut it short.
  const hold = <T extends Promise<unknown>>(write: (store: ThreadStore) => T): T => {
    const entry = retain(client, key, open);
    const promise = write(entry.store);
    const done = () => release(client, key, entry);
    promise.then(done, done);
    return promise;
  };
  return {
    subscribe: (onChange) => subscribeShared(client, key, open, onChange),
    getSnapshot: () => peek<ThreadStore>(client, key)?.getSnapshot() ?? CONNECTING_SNAPSHOT,
    getServerSnapshot: () => CONNECTING_SNAPSHOT,
    writes: {
      createArtifact: (input) => hold((store) => store.createArtifact(input)),
      updateArtifact: (artifactId, payload, options) =>
        hold((store) => store.updateArtifact(artifactId, payload, options)),
      mergeArtifact: (artifactId, patch, options) => hold((store) => store.mergeArtifact(artifactId, patch, options)),
      removeArtifact: (artifactId, options) => hold((store) => store.removeArtifact(artifactId, options)),
    },
  };
}

/** useThreads' pieces, without React. */
export function threadsSource(
  client: Pick<ArtifactsClient, "watchThreads">,
  ids: readonly string[],
  options?: WatchOptions,
): ExternalStore<ThreadsSnapshot> {
  const watched = [...ids];
  const key = `threads\u0000${JSON.stringify(watched)}\u0000${optionsKey(options)}`;
  const open = () => client.watchThreads(watched, options);
  const connecting = connectingThreads(watched);
  return {
    subscribe: (onChange) => subscribeShared(client, key, open, onChange),
    getSnapshot: () => peek<ThreadsStore>(client, key)?.getSnapshot() ?? connecting,
    getServerSnapshot: () => connecting,
  };
}

/** The ThreadsSnapshot before the store is subscribed, and on the server: every thread `connecting`. */
export function connectingThreads(ids: readonly string[]): ThreadsSnapshot {
  const threads: Record<string, ThreadSnapshot> = {};
  for (const id of ids) threads[id] = CONNECTING_SNAPSHOT;
  return Object.freeze({ status: "connecting", threads: Object.freeze(threads) });
}

function optionsKey(options: WatchOptions | undefined): string {
  return `${options?.minBackoffMs ?? ""},${options?.maxBackoffMs ?? ""},${options?.writeRetries ?? ""}`;
}

// --- shared stores, counted ---

interface Closable {
  subscribe(listener: () => void): () => void;
  close(): void;
}

/** A store and how many subscriptions and unsettled writes hold it. */
interface Entry<S extends Closable> {
  readonly store: S;
  holds: number;
}

/** Per client (weakly: a client dropped drops its map), per key. */
const stores = new WeakMap<object, Map<string, Entry<Closable>>>();

function peek<S extends Closable>(client: object, key: string): S | undefined {
  return stores.get(client)?.get(key)?.store as S | undefined;
}

function retain<S extends Closable>(client: object, key: string, open: () => S): Entry<S> {
  let byKey = stores.get(client);
  if (!byKey) stores.set(client, byKey = new Map());
  let entry = byKey.get(key) as Entry<S> | undefined;
  if (!entry) {
    entry = { store: open(), holds: 0 };
    byKey.set(key, entry);
  }
  entry.holds++;
  return entry;
}

/**
 * One hold less. The last one closes the store a microtask later, unless it was held again
 * meanwhile: React (StrictMode in development, a component that moves) unsubscribes and
 * subscribes again in one synchronous pass.
 */
function release(client: object, key: string, entry: Entry<Closable>): void {
  entry.holds--;
  if (entry.holds > 0) return;
  queueMicrotask(() => {
    const byKey = stores.get(client);
    if (entry.holds > 0 || byKey?.get(key) !== entry) return;
    byKey.delete(key);
    entry.store.close();
  });
}

function subscribeShared<S extends Closable>(
  client: object,
  key: string,
  open: () => S,
  onChange: () => void,
): () => void {
  const entry = retain(client, key, open);
  const unsubscribe = entry.store.subscribe(onChange);
  let subscribed = true;
  return () => {
    if (!subscribed) return;
    subscribed = false;
    unsubscribe();
    release(client, key, entry);
  };
}
