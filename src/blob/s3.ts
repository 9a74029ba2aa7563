import { AwsClient } from "aws4fetch";
import { sha256Hex } from "../model/digest.ts";
import {
  assertValidKey,
  type BlobStore,
  DEFAULT_LIST_LIMIT,
  type ListOptions,
  type PutIfAbsentResult,
} from "./port.ts";

export interface S3BlobStoreOptions {
  bucket: string;
  /** Origin of the S3 API, e.g. `http://127.0.0.1:9000`, `https://<account>.r2.cloudflarestorage.com`, `https://s3.us-east-1.amazonaws.com`. */
  endpoint: string;
  /** Signing region; default `auto` for R2 endpoints, else `us-east-1`. */
  region?: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** The fetch to send requests with (default: the global one). */
  fetch?: typeof fetch;
}

/**
 * An S3 API failure: the HTTP status and S3's error `<Code>`, nothing else. Never
 * carries the request (its URL, headers or signature) or any credential.
 */
export class S3Error extends Error {
  readonly status: number;
  readonly code: string;

  constructor(operation: string, status: number, code: string) {
    super(`S3 ${operation} failed: ${status}${code ? ` ${code}` : ""}`);
    this.name = "S3Error";
    this.status = status;
    this.code = code;
  }
}

/** Attempts for requests that are safe to repeat (GET, HEAD, list, plain PUT) and for conditional PUTs. */
const MAX_ATTEMPTS = 4;
const BACKOFF_MS = 25;
/** ListObjectsV2 returns at most this many keys per page. */
const PAGE_SIZE = 1000;

const utf8 = new TextEncoder();
/** Decodes bodies byte for byte: `Response.text()` would drop a leading U+FEFF. */
const utf8Decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * A BlobStore over the S3 API (AWS S3, Cloudflare R2, MinIO, ...), signed with
 * SigV4 by aws4fetch. Web-standard only (fetch, crypto.subtle), so it runs on
 * Node, Deno and Workers. Path-style URLs: `${endpoint}/${bucket}/${key}`.
 *
 * putIfAbsent is a PUT with `If-None-Match: *`, which the store must honour
 * (AWS S3 since August 2024, R2, recent MinIO); on a store that ignores it,
 * putIfAbsent silently overwrites, so do not point this at one.
 */
export class S3BlobStore implements BlobStore {
  readonly #client: AwsClient;
  readonly #base: string;
  readonly #fetch: typeof fetch;

  constructor(options: S3BlobStoreOptions) {
    if (!options.bucket || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(options.bucket)) {
      throw new TypeError(`invalid S3 bucket name: ${JSON.stringify(options.bucket)}`);
    }
    if (!options.accessKeyId || !options.secretAccessKey) {
      throw new TypeError("S3BlobStore needs accessKeyId and secretAccessKey");
    }
    const endpoint = new URL(options.endpoint);
    if (endpoint.protocol !== "http:" && endpoint.protocol !== "https:") {
      throw new TypeError("S3 endpoint must be an http(s) URL");
    }
    if (endpoint.username || endpoint.password || endpoint.search || endpoint.hash) {
      throw new TypeError("S3 endpoint must be a plain origin (no credentials, query or fragment)");
    }
    const region = options.region ?? (endpoint.hostname.endsWith(".r2.cloudflarestorage.com") ? "auto" : "us-east-1");
    this.#client = new AwsClient({
      accessKeyId: options.accessKeyId,
      secretAccessKey: options.secretAccessKey,
      ...(options.sessionToken ? { sessionToken: options.sessionToken } : {}),
      service: "s3",
      region,
      retries: 0,
    });
    this.#base = `${endpoint.origin}${endpoint.pathname.replace(/\/+$/, "")}/${options.bucket}`;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
  }

  async get(key: string): Promise<string | null> {
    const response = await this.#idempotent("GET", "GET", this.#objectUrl(key));
    if (response.status !== 200) {
      const error = await failure("GET", response);
      // A 404 for a missing bucket (NoSuchBucket) is a misconfiguration, not a missing object.
      if (response.status === 404 && (error.code === "NoSuchKey" || error.code === "")) return null;
      throw error;
    }
    return utf8Decoder.decode(await response.arrayBuffer());
  }

  async exists(key: string): Promise<boolean> {
    const response = await this.#idempotent("HEAD", "HEAD", this.#objectUrl(key));
    await discard(response);
    if (response.status === 200) return true;
    if (response.status === 404) return false;
    throw new S3Error("HEAD", response.status, "");
  }

  /** DELETE: 204 (or 200) when removed, and also when there was nothing to remove. */
  async delete(key: string): Promise<void> {
    const response = await this.#idempotent("DELETE", "DELETE", this.#objectUrl(key));
    if (!response.ok && response.status !== 404) throw await failure("DELETE", response);
    await discard(response);
  }

  async put(key: string, body: string): Promise<void> {
    const url = this.#objectUrl(key);
    const bytes = utf8.encode(body) as Uint8Array<ArrayBuffer>;
    const headers = await bodyHeaders(bytes);
    const response = await this.#idempotent("PUT", "PUT", url, { headers, body: bytes });
    if (!response.ok) throw await failure("PUT", response);
    await discard(response);
  }

  /**
   * PUT with `If-None-Match: *`: 2xx is "created", 412 is "exists". 409
   * ConditionalRequestConflict (another conditional write of this key in flight)
   * and 429/5xx are retried with backoff. When an earlier attempt may have been
   * applied (5xx or a network error) and a retry then meets 412, the stored body
   * decides: ours means that attempt created it.
   */
  async putIfAbsent(key: string, body: string): Promise<PutIfAbsentResult> {
    const url = this.#objectUrl(key);
    const bytes = utf8.encode(body) as Uint8Array<ArrayBuffer>;
    const headers = { ...(await bodyHeaders(bytes)), "If-None-Match": "*" };
    let maybeApplied = false;
    let last: S3Error | Error | undefined;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (attempt > 0) await backoff(attempt);
      let response: Response;
      try {
        response = await this.#send("PUT", url, { headers, body: bytes });
      } catch (error) {
        maybeApplied = true;
        last = networkError("PUT", error);
        continue;
      }
      if (response.ok) {
        await discard(response);
        return "created";
      }
      if (response.status === 412) {
        await discard(response);
        return maybeApplied && (await this.get(key)) === body ? "created" : "exists";
      }
      last = await failure("PUT", response);
      if (response.status >= 500) maybeApplied = true;
      else if (response.status !== 409 && response.status !== 429) throw last;
    }
    // Still contended or failing: settle it by looking.
    const stored = await this.get(key);
    if (stored !== null) return maybeApplied && stored === body ? "created" : "exists";
    throw last ?? new S3Error("PUT", 0, "");
  }

  async list(prefix: string, options: ListOptions = {}): Promise<string[]> {
    const limit = options.limit ?? DEFAULT_LIST_LIMIT;
    const startAfter = options.startAfter ?? "";
    const keys: string[] = [];
    let continuationToken: string | undefined;
    while (keys.length < limit) {
      const params = new URLSearchParams({
        "list-type": "2",
        "max-keys": String(Math.min(PAGE_SIZE, limit - keys.length)),
      });
      if (prefix) params.set("prefix", prefix);
      if (continuationToken !== undefined) params.set("continuation-token", continuationToken);
      else if (startAfter) params.set("start-after", startAfter);
      const response = await this.#idempotent(
        "LIST",
        "GET",
        `${this.#base}?${params.toString().replace(/\+/g, "%20")}`,
      );
      if (response.status !== 200) throw await failure("LIST", response);
      const page = parseListPage(await response.text());
      for (const key of page.keys) {
        // S3 already filters and orders (UTF-8 byte order); this only guards against a store that does not.
        if (key.startsWith(prefix) && isAfter(key, startAfter) && keys.length < limit) keys.push(key);
      }
      if (!page.truncated || page.nextToken === undefined) break;
      // A server that hands back the token it was given would page forever.
      if (page.nextToken === continuationToken) throw new S3Error("LIST", response.status, "RepeatedContinuationToken");
      continuationToken = page.nextToken;
    }
    return keys;
  }

  #objectUrl(key: string): string {
    assertValidKey(key);
    return `${this.#base}/${key.split("/").map(encodeSegment).join("/")}`;
  }

  async #send(method: string, url: string, init: RequestParts = {}): Promise<Response> {
    const request = await this.#client.sign(url, { method, ...init });
    return this.#fetch(request);
  }

  /** Sends a request that is safe to repeat, retrying network errors, 429 and 5xx. */
  async #idempotent(operation: string, method: string, url: string, init?: RequestParts): Promise<Response> {
    for (let attempt = 0;; attempt++) {
      if (attempt > 0) await backoff(attempt);
      const last = attempt === MAX_ATTEMPTS - 1;
      let response: Response;
      try {
        response = await this.#send(method, url, init);
      } catch (error) {
        if (last) throw networkError(operation, error);
        continue;
      }
      if (last || (response.status < 500 && response.status !== 429)) return response;
      await discard(response);
    }
  }
}

interface RequestParts {
  headers?: Record<string, string>;
  body?: Uint8Array<ArrayBuffer>;
}

/** RFC 3986 encoding of one key segment (also `!'()*`, which encodeURIComponent leaves), as SigV4 canonicalizes it. */
function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

async function bodyHeaders(bytes: Uint8Array<ArrayBuffer>): Promise<Record<string, string>> {
  // A signed payload hash: S3 rejects a body that does not match it.
  return { "Content-Type": "application/json", "X-Amz-Content-Sha256": await sha256Hex(bytes) };
}

function backoff(attempt: number): Promise<void> {
  const ms = BACKOFF_MS * 2 ** (attempt - 1) * (0.5 + Math.random());
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function discard(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => {});
}

/** An S3Error from an error response: its status and `<Code>`, never the message, resource or request id. */
async function failure(operation: string, response: Response): Promise<S3Error> {
  const text = await response.text().catch(() => "");
  const code = /<Code>([A-Za-z0-9.]{1,64})<\/Code>/.exec(text)?.[1] ?? "";
  return new S3Error(operation, response.status, code);
}

/** A transport failure, described by its system error code only (no URL, headers or signature). */
function networkError(operation: string, error: unknown): Error {
  let cause: unknown = error;
  let code: string | undefined;
  for (let depth = 0; depth < 4 && typeof cause === "object" && cause !== null; depth++) {
    const candidate = (cause as { code?: unknown }).code;
    if (typeof candidate === "string" && /^[A-Z0-9_]{1,64}$/.test(candidate)) code = candidate;
    cause = (cause as { cause?: unknown }).cause;
  }
  return new Error(`S3 ${operation} failed: network error${code ? ` (${code})` : ""}`);
}

/** Whether `key` sorts after `startAfter` in UTF-8 byte order (code point order), the order S3 lists in. */
function isAfter(key: string, startAfter: string): boolean {
  let i = 0;
  let j = 0;
  while (i < key.length && j < startAfter.length) {
    const a = key.codePointAt(i) as number;
    const b = startAfter.codePointAt(j) as number;
    if (a !== b) return a > b;
    i += a > 0xffff ? 2 : 1;
    j += b > 0xffff ? 2 : 1;
  }
  return i < key.length;
}

interface ListPage {
  keys: string[];
  truncated: boolean;
  nextToken: string | undefined;
}

function parseListPage(xml: string): ListPage {
  const keys: string[] = [];
  for (const contents of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
    const key = /<Key>([^<]*)<\/Key>/.exec(contents[1] as string)?.[1];
    if (key !== undefined) keys.push(decodeXml(key));
  }
  const truncated = /<IsTruncated>\s*true\s*<\/IsTruncated>/.test(xml);
  const token = /<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml)?.[1];
  return { keys, truncated, nextToken: token === undefined ? undefined : decodeXml(token) };
}

const NAMED_ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function decodeXml(text: string): string {
  return text.replace(/&(#x[0-9A-Fa-f]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (_, entity: string) => {
    if (!entity.startsWith("#")) return NAMED_ENTITIES[entity] as string;
    const codePoint = entity.startsWith("#x")
      ? Number.parseInt(entity.slice(2), 16)
      : Number.parseInt(entity.slice(1), 10);
    if (codePoint > 0x10ffff) throw new Error("S3 LIST failed: malformed XML character reference");
    return String.fromCodePoint(codePoint);
  });
}
