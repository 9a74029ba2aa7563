/**
 * A test-only Worker that runs `R2BlobStore` inside workerd against the `BUCKET` R2 binding.
 * Bundled with esbuild and started in Miniflare by test/support/r2-proxy-store.ts; the Node
 * side forwards every BlobStore call here, so the adapter code under test is what workerd runs.
 *
 *   POST /blob   {"method": "get" | "putIfAbsent" | "put" | "exists" | "delete" | "list", "args": [...]}
 *                → {"ok": true, "value": ...} | {"ok": false, "error": {"name", "message", "stack"}}
 *   POST /raw    {"key"} → the object as the bucket itself holds it (bypassing the adapter):
 *                {"object": {"body", "etag", "version", "size"} | null}
 *   POST /reset  deletes every object in the bucket → {"deleted", "remaining"}
 *
 * Web-standard only, and no Workers type package: the binding is typed structurally.
 */
import { R2BlobStore, type R2BucketLike } from "../../src/blob/r2.ts";

interface TestBucket extends R2BucketLike {
  get(
    key: string,
  ): Promise<{ key: string; etag: string; version: string; size: number; text(): Promise<string> } | null>;
  delete(keys: string | string[]): Promise<void>;
}

export interface Env {
  BUCKET: TestBucket;
}

export type BlobMethod = "get" | "putIfAbsent" | "put" | "exists" | "delete" | "list";

const METHODS: ReadonlySet<string> = new Set<BlobMethod>(["get", "putIfAbsent", "put", "exists", "delete", "list"]);

export interface BlobCall {
  method: BlobMethod;
  args: unknown[];
}

export type BlobReply = { ok: true; value?: unknown } | {
  ok: false;
  error: { name: string; message: string; stack?: string };
};

export interface RawObject {
  body: string;
  etag: string;
  version: string;
  size: number;
}

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });
}

async function callBlob(env: Env, call: BlobCall): Promise<BlobReply> {
  if (!METHODS.has(call.method) || !Array.isArray(call.args)) {
    return { ok: false, error: { name: "TypeError", message: `not a BlobStore call: ${JSON.stringify(call.method)}` } };
  }
  const store = new R2BlobStore(env.BUCKET);
  try {
    const value: unknown = await (store[call.method] as (...args: unknown[]) => Promise<unknown>).apply(
      store,
      call.args,
    );
    return { ok: true, value };
  } catch (error) {
    const e = error instanceof Error ? error : new Error(String(error));
    return {
      ok: false,
      error: { name: e.name, message: e.message, ...(e.stack === undefined ? {} : { stack: e.stack }) },
    };
  }
}

async function reset(env: Env): Promise<{ deleted: number; remaining: number }> {
  let deleted = 0;
  for (;;) {
    const page = await env.BUCKET.list({ limit: 1000 });
    if (page.objects.length === 0) break;
    await env.BUCKET.delete(page.objects.map((object) => object.key));
    deleted += page.objects.length;
  }
  const remaining = (await env.BUCKET.list({ limit: 1000 })).objects.length;
  return { deleted, remaining };
}

async function raw(env: Env, key: string): Promise<{ object: RawObject | null }> {
  const object = await env.BUCKET.get(key);
  if (object === null) return { object: null };
  return { object: { body: await object.text(), etag: object.etag, version: object.version, size: object.size } };
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    if (request.method !== "POST") return json({ error: "POST only" }, 405);
    const path = new URL(request.url).pathname;
    if (path === "/blob") return json(await callBlob(env, (await request.json()) as BlobCall));
    if (path === "/raw") return json(await raw(env, ((await request.json()) as { key: string }).key));
    if (path === "/reset") return json(await reset(env));
    return json({ error: `no route ${path}` }, 404);
  },
};
