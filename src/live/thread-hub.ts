import { threadKey } from "../model/ids.ts";
import type { Notifier } from "./notifier.ts";

/** The parts of the Workers Durable Object API we use, structurally (no workers-types dependency). */
export interface DurableObjectStubLike {
  fetch(input: string, init?: RequestInit): Promise<Response>;
}
export interface DurableObjectNamespaceLike {
  idFromName(name: string): unknown;
  get(id: unknown): DurableObjectStubLike;
}
export interface WaitUntil {
  waitUntil(promise: Promise<unknown>): void;
}

/** How long one `/wait` is held open before it answers "nothing new" (ms). */
const WAIT_MS = 25_000;

/**
 * Durable Object `ThreadHub`, one per (tenant, thread): writers POST `/notify` after
 * each commit; streams in any isolate hold a `/wait?after=<seq>` open and are
 * answered the moment a newer seq is hinted. It stores nothing: after an eviction
 * the next hint starts it afresh, and streams never depend on it (they poll too).
 */
export class ThreadHub {
  #seq = 0;
  #waiters = new Set<(seq: number) => void>();

  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (request.method === "POST" && url.pathname === "/notify") {
      const seq = Number(await request.text());
      if (Number.isSafeInteger(seq) && seq > this.#seq) {
        this.#seq = seq;
        const waiters = [...this.#waiters];
        this.#waiters.clear();
        for (const wake of waiters) wake(seq);
      }
      return new Response(null, { status: 204 });
    }
    if (request.method === "GET" && url.pathname === "/wait") {
      const after = Number(url.searchParams.get("after") ?? "0");
      if (this.#seq > after) return Response.json({ seq: this.#seq });
      const seq = await new Promise<number>((resolve) => {
        const wake = (n: number) => {
          clearTimeout(timer);
          this.#waiters.delete(wake);
          resolve(n);
        };
        const timer = setTimeout(() => wake(this.#seq), WAIT_MS);
        this.#waiters.add(wake);
        request.signal?.addEventListener("abort", () => wake(this.#seq), { once: true });
      });
      return Response.json({ seq });
    }
    return new Response("not found", { status: 404 });
  }
}

/**
 * Hints through `ThreadHub`: notify posts to the thread's hub (kept alive past the
 * response with waitUntil); subscribe long-polls it while the subscription lasts.
 */
export class DurableObjectNotifier implements Notifier {
  readonly #namespace: DurableObjectNamespaceLike;
  readonly #ctx: WaitUntil | undefined;
  readonly #loops = new Set<AbortController>();

  constructor(namespace: DurableObjectNamespaceLike, ctx?: WaitUntil) {
    this.#namespace = namespace;
    this.#ctx = ctx;
  }

  #stub(tenant: string, threadId: string): DurableObjectStubLike {
    return this.#namespace.get(this.#namespace.idFromName(threadKey(tenant, threadId)));
  }

  notify(tenant: string, threadId: string, seq: number): void {
    const sent = this.#stub(tenant, threadId)
      .fetch("https://thread-hub/notify", { method: "POST", body: String(seq) })
      .then((response) => response.body?.cancel())
      .catch(() => {});
    this.#ctx?.waitUntil(sent);
  }

  subscribe(tenant: string, threadId: string, listener: () => void): () => void {
    const stop = new AbortController();
    this.#loops.add(stop);
    const stub = this.#stub(tenant, threadId);
    void (async () => {
      // -1: the first answer comes at once and only tells where the hub is; later ones are news.
      let after = -1;
      while (!stop.signal.aborted) {
        try {
          const response = await stub.fetch(`https://thread-hub/wait?after=${after}`, { signal: stop.signal });
          const { seq } = (await response.json()) as { seq: number };
          if (seq > after) {
            if (after >= 0) listener();
            after = seq;
          }
        } catch {
          // Hub unreachable: streams keep polling the log; try the hub again shortly.
          if (!stop.signal.aborted) await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
    })();
    return () => {
      stop.abort();
      this.#loops.delete(stop);
    };
  }

  close(): void {
    for (const stop of this.#loops) stop.abort();
    this.#loops.clear();
  }
}
