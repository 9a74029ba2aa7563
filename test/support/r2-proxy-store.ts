/**
 * Runs `R2BlobStore` inside workerd: bundles test/support/r2-worker.ts with esbuild, starts it
 * in Miniflare 5 with a local, unpersisted R2 bucket bound as `BUCKET`, and gives Node a BlobStore
 * whose every call is forwarded to that Worker over `dispatchFetch` (loopback only).
 *
 * Errors thrown inside workerd come back as `{name, message}` and are rethrown here with the
 * same name; an `InvalidKeyError` raised by the adapter's `assertValidKey` in workerd is
 * rebuilt as the port's `InvalidKeyError` so callers can test for it with `instanceof`.
 */
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { type BlobStore, InvalidKeyError, type ListOptions, type PutIfAbsentResult } from "../../src/blob/port.ts";
import type { BlobCall, BlobMethod, BlobReply, RawObject } from "./r2-worker.ts";
import { compatibilityDate, sharedOptions } from "./workerd.ts";

const WORKER_ENTRY = fileURLToPath(new URL("./r2-worker.ts", import.meta.url));

/** Bundles the test Worker (and the adapter it imports) into one ES module for workerd. */
export async function bundleR2Worker(): Promise<string> {
  const result = await build({
    entryPoints: [WORKER_ENTRY],
    bundle: true,
    format: "esm",
    // "neutral" resolves no Node built-ins: a `node:*` import anywhere in the adapter fails the bundle.
    platform: "neutral",
    target: "es2022",
    write: false,
    logLevel: "silent",
  });
  const [output] = result.outputFiles;
  if (output === undefined || result.outputFiles.length !== 1) {
    throw new Error(`expected one bundled file, got ${result.outputFiles.length}`);
  }
  return output.text;
}

export class WorkerError extends Error {
  constructor(
    name: string,
    message: string,
    readonly remoteStack?: string,
  ) {
    super(message);
    this.name = name;
  }
}

export class R2Worker {
  private constructor(
    readonly mf: Miniflare,
    readonly script: string,
  ) {}

  static async start(): Promise<R2Worker> {
    const script = await bundleR2Worker();
    const mf = new Miniflare({
      ...sharedOptions(),
      // No resourcePersistencePath: the bucket lives in Miniflare's temporary storage and goes with dispose().
      workers: [{
        config: {
          name: "r2-worker",
          // The deploy's date: the adapter is tested on the runtime behaviour it ships with.
          compatibilityDate: compatibilityDate(),
          manifest: { mainModule: "r2-worker.js", modules: { "r2-worker.js": { type: "esm", contents: script } } },
          env: { BUCKET: { type: "r2", name: "BUCKET" } },
        },
      }],
    });
    await mf.ready;
    return new R2Worker(mf, script);
  }

  async #post<T>(path: string, body: unknown): Promise<T> {
    const response = await this.mf.dispatchFetch(`http://r2-worker.test${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    if (response.status !== 200) {
      throw new Error(`r2 worker ${path} answered ${response.status}: ${text.slice(0, 500)}`);
    }
    return JSON.parse(text) as T;
  }

  /** Calls `method` on an `R2BlobStore(env.BUCKET)` inside workerd; rethrows its error by name. */
  async call(method: BlobMethod, args: unknown[]): Promise<unknown> {
    const call: BlobCall = { method, args };
    const reply = await this.#post<BlobReply>("/blob", call);
    if (reply.ok) return reply.value;
    const { name, message, stack } = reply.error;
    if (name === "InvalidKeyError") {
      const error = new InvalidKeyError(String(args[0]));
      error.message = message;
      throw error;
    }
    throw new WorkerError(name, message, stack);
  }

  /** The object exactly as the R2 bucket holds it, read by the Worker without the adapter. */
  async raw(key: string): Promise<RawObject | null> {
    return (await this.#post<{ object: RawObject | null }>("/raw", { key })).object;
  }

  /** Deletes every object; throws unless the bucket then lists empty. */
  async reset(): Promise<void> {
    const { remaining } = await this.#post<{ deleted: number; remaining: number }>("/reset", {});
    if (remaining !== 0) throw new Error(`r2 bucket still holds ${remaining} objects after reset`);
  }

  store(): BlobStore {
    return new R2ProxyStore(this);
  }

  async dispose(): Promise<void> {
    await this.mf.dispose();
  }
}

/** A BlobStore on the Node side whose every method runs inside workerd. */
export class R2ProxyStore implements BlobStore {
  constructor(readonly worker: R2Worker) {}

  async get(key: string): Promise<string | null> {
    return (await this.worker.call("get", [key])) as string | null;
  }

  async putIfAbsent(key: string, body: string): Promise<PutIfAbsentResult> {
    return (await this.worker.call("putIfAbsent", [key, body])) as PutIfAbsentResult;
  }

  async put(key: string, body: string): Promise<void> {
    await this.worker.call("put", [key, body]);
  }

  async exists(key: string): Promise<boolean> {
    return (await this.worker.call("exists", [key])) as boolean;
  }

  async delete(key: string): Promise<void> {
    await this.worker.call("delete", [key]);
  }

  async list(prefix: string, options?: ListOptions): Promise<string[]> {
    return (await this.worker.call("list", options === undefined ? [prefix] : [prefix, options])) as string[];
  }
}
