import {
  assertValidKey,
  type BlobStore,
  compareKeys,
  DEFAULT_LIST_LIMIT,
  type ListOptions,
  type PutIfAbsentResult,
} from "./port.ts";

/** In-process BlobStore for unit tests and `BLOB_STORE=memory:`. Not durable. */
export class MemoryBlobStore implements BlobStore {
  /** Gets are local: see BlobStore.localReads. */
  readonly localReads = true;
  readonly #objects = new Map<string, string>();

  async get(key: string): Promise<string | null> {
    assertValidKey(key);
    return this.#objects.get(key) ?? null;
  }

  async putIfAbsent(key: string, body: string): Promise<PutIfAbsentResult> {
    assertValidKey(key);
    if (this.#objects.has(key)) return "exists";
    this.#objects.set(key, body);
    return "created";
  }

  async put(key: string, body: string): Promise<void> {
    assertValidKey(key);
    this.#objects.set(key, body);
  }

  async exists(key: string): Promise<boolean> {
    assertValidKey(key);
    return this.#objects.has(key);
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    this.#objects.delete(key);
  }

  async list(prefix: string, options: ListOptions = {}): Promise<string[]> {
    const limit = options.limit ?? DEFAULT_LIST_LIMIT;
    const startAfter = options.startAfter ?? "";
    return [...this.#objects.keys()]
      .filter((key) => key.startsWith(prefix) && key > startAfter)
      .sort(compareKeys)
      .slice(0, limit);
  }
}
