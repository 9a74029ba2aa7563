import { FaultBurst } from "../logging/faults.ts";
import { logger } from "../logging/logger.ts";
import type { Metrics } from "../model/metrics.ts";
import { measureStoreCall, type StoreOperation, storeOperation } from "../model/store-calls.ts";
import type { BlobStore, ListOptions, PutIfAbsentResult } from "./port.ts";

/** The rollout store's faults, once per burst (see FaultBurst); Workers keep one per isolate. */
export function blobFaults(): FaultBurst {
  return new FaultBurst({ store: "blob", log: logger("rollout") });
}

const GET = storeOperation("blob", "get");
const PUT_IF_ABSENT = storeOperation("blob", "putIfAbsent");
const PUT = storeOperation("blob", "put");
const EXISTS = storeOperation("blob", "exists");
const DELETE = storeOperation("blob", "delete");
const LIST = storeOperation("blob", "list");

/**
 * The rollout store observed at its port, whatever the adapter (fs, memory, R2, S3), in
 * ONE wrapper: every call's duration and outcome as `store="blob"`, `operation` = the
 * port method, a client span per call inside a traced request, and its faults logged
 * once per burst (the first failed call of a burst with its operation and error, the
 * rest counted). Keys stay out of all three (they hold tenant and thread ids).
 *
 * @example
 * const rollout = new Rollout(instrumentBlobStore(new FsBlobStore(dir), metrics));
 */
export function instrumentBlobStore(store: BlobStore, metrics: Metrics, faults: FaultBurst = blobFaults()): BlobStore {
  return new InstrumentedBlobStore(store, metrics, faults);
}

class InstrumentedBlobStore implements BlobStore {
  readonly #store: BlobStore;
  readonly #metrics: Metrics;
  readonly #faults: FaultBurst;
  readonly localReads?: boolean;

  constructor(store: BlobStore, metrics: Metrics, faults: FaultBurst) {
    this.#store = store;
    this.#metrics = metrics;
    this.#faults = faults;
    if (store.localReads !== undefined) this.localReads = store.localReads;
  }

  get(key: string): Promise<string | null> {
    return this.#call(GET, () => this.#store.get(key));
  }

  putIfAbsent(key: string, body: string): Promise<PutIfAbsentResult> {
    return this.#call(PUT_IF_ABSENT, () => this.#store.putIfAbsent(key, body));
  }

  put(key: string, body: string): Promise<void> {
    return this.#call(PUT, () => this.#store.put(key, body));
  }

  exists(key: string): Promise<boolean> {
    return this.#call(EXISTS, () => this.#store.exists(key));
  }

  delete(key: string): Promise<void> {
    return this.#call(DELETE, () => this.#store.delete(key));
  }

  list(prefix: string, options?: ListOptions): Promise<string[]> {
    return this.#call(LIST, () => this.#store.list(prefix, options));
  }

  #call<T>(op: StoreOperation, call: () => Promise<T>): Promise<T> {
    return measureStoreCall(this.#metrics, op, async () => {
      try {
        const result = await call();
        this.#faults.succeeded();
        return result;
      } catch (error) {
        this.#faults.failed(op.operation, error);
        throw error;
      }
    });
  }
}
