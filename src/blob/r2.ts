import {
  assertValidKey,
  type BlobStore,
  DEFAULT_LIST_LIMIT,
  type ListOptions,
  type PutIfAbsentResult,
} from "./port.ts";

/**
 * The slice of a Workers R2 bucket binding this adapter uses, declared structurally so the
 * file needs neither `@cloudflare/workers-types` nor any `node:*` module. A real `R2Bucket`
 * satisfies it.
 */
export interface R2BucketLike {
  get(key: string): Promise<R2ObjectBodyLike | null>;
  head(key: string): Promise<R2ObjectLike | null>;
  /** Resolves to null when an `onlyIf` precondition fails. */
  put(key: string, value: string, options?: R2PutOptionsLike): Promise<R2ObjectLike | null>;
  list(options?: R2ListOptionsLike): Promise<R2ObjectsLike>;
  delete(key: string): Promise<void>;
}

export interface R2ObjectLike {
  readonly key: string;
}

export interface R2ObjectBodyLike extends R2ObjectLike {
  text(): Promise<string>;
}

export interface R2PutOptionsLike {
  onlyIf?: { etagDoesNotMatch?: string } | Headers;
}

export interface R2ListOptionsLike {
  prefix?: string;
  startAfter?: string;
  cursor?: string;
  limit?: number;
}

export type R2ObjectsLike =
  & { objects: R2ObjectLike[] }
  & ({ truncated: true; cursor: string } | { truncated: false; cursor?: string });

/** R2 returns at most 1000 keys per list call. */
const R2_MAX_LIST_PAGE = 1000;

/**
 * BlobStore over a Workers R2 bucket binding. putIfAbsent is R2's conditional put
 * (`etagDoesNotMatch: "*"`, i.e. `If-None-Match: *`): R2 checks and writes atomically
 * and resolves to null when an object already exists. Objects are written whole, so
 * readers never see a partial body.
 */
export class R2BlobStore implements BlobStore {
  readonly #bucket: R2BucketLike;

  constructor(bucket: R2BucketLike) {
    this.#bucket = bucket;
  }

  async get(key: string): Promise<string | null> {
    assertValidKey(key);
    const object = await this.#bucket.get(key);
    return object === null ? null : await object.text();
  }

  async putIfAbsent(key: string, body: string): Promise<PutIfAbsentResult> {
    assertValidKey(key);
    const written = await this.#bucket.put(key, body, { onlyIf: { etagDoesNotMatch: "*" } });
    return written === null ? "exists" : "created";
  }

  async put(key: string, body: string): Promise<void> {
    assertValidKey(key);
    await this.#bucket.put(key, body);
  }

  async exists(key: string): Promise<boolean> {
    assertValidKey(key);
    return (await this.#bucket.head(key)) !== null;
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    await this.#bucket.delete(key);
  }

  async list(prefix: string, options: ListOptions = {}): Promise<string[]> {
    const limit = options.limit ?? DEFAULT_LIST_LIMIT;
    const keys: string[] = [];
    if (limit <= 0) return keys;
    let cursor: string | undefined;
    while (keys.length < limit) {
      const page = await this.#bucket.list({
        prefix,
        limit: Math.min(limit - keys.length, R2_MAX_LIST_PAGE),
        ...(cursor === undefined
          ? (options.startAfter === undefined ? {} : { startAfter: options.startAfter })
          : { cursor }),
      });
      for (const object of page.objects) keys.push(object.key);
      if (!page.truncated) break;
      cursor = page.cursor;
    }
    return keys.slice(0, limit);
  }
}
