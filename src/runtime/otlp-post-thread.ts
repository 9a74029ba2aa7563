/**
 * The span export's POSTs on a thread of their own (otlp-post-worker.ts runs there
 * otlp-http-post.ts, with its retries): each batch is one message to the thread (its bytes
 * copied, ~60 KB for 512 spans) and one answer back (otlp-post-messages.ts).
 *
 * Why: an HTTP client in the server's own isolate shares Node's event-emitter, stream and
 * socket functions with the server's requests, and its objects (a client request, its
 * response, the agent's socket) are shapes those functions never see otherwise. V8's
 * inline caches at dozens of sites the server runs on every request (adding a listener,
 * emitting, reading and writing a socket) then turn megamorphic: every request pays for
 * the dozen posts a second. Counted with `--log-ic` on a pinned server: the posts on the
 * event loop turned ~100 such sites megamorphic; from this thread, ~25–40 more than with
 * tracing off stay so (docs/decisions.md, "Metrics and traces"). The post itself is cheap
 * once it is off the requests' code.
 *
 * The thread starts with the export, so that its modules load while the first batch
 * gathers. If it fails, the posts in flight answer failure (their batches are dropped and
 * logged, as any failed export) and the posts after it run on the event loop, with the
 * same settings.
 */
import { Worker } from "node:worker_threads";
import type { ExportResponse, IExporterTransport } from "@opentelemetry/otlp-exporter-base";
import { otlpHttpPost } from "./otlp-http-post.ts";
import {
  exporterSettings,
  type PostAnswer,
  type PostRequest,
  type PostThreadSettings,
  responseOf,
} from "./otlp-post-messages.ts";

/** The SDK's settings for an OTLP/HTTP exporter on Node (its type is not exported by name). */
type OtlpNodeHttpConfiguration = ReturnType<typeof exporterSettings>;

const POST_WORKER = new URL("./otlp-post-worker.ts", import.meta.url);

/**
 * The transport the SDK's export delegate posts through: on the post thread, or on the
 * event loop (over `configuration`, the delegate's own: `exporterSettings(settings)`) once
 * the thread has failed. `worker` is the thread's script (a test's may fail on purpose).
 */
export function otlpPostThread(
  configuration: OtlpNodeHttpConfiguration,
  settings: PostThreadSettings,
  worker: URL = POST_WORKER,
): IExporterTransport {
  let inline: IExporterTransport | undefined;
  const thread = new PostThread(worker, settings, () => inline ??= otlpHttpPost(configuration));
  return {
    send: (body, timeoutMs) => inline ? inline.send(body, timeoutMs) : thread.send(body, timeoutMs),
    shutdown: () => thread.close(),
  };
}

class PostThread {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, (response: ExportResponse) => void>();
  #posts = 0;
  #gone = false;

  constructor(script: URL, settings: PostThreadSettings, onFailed: () => void) {
    this.#worker = new Worker(script, { workerData: settings });
    this.#worker.on("message", ({ id, response }: PostAnswer) => {
      const answer = this.#waiting.get(id);
      if (!answer) return;
      this.#waiting.delete(id);
      if (this.#waiting.size === 0) this.#worker.unref();
      answer(responseOf(response));
    });
    const fail = (error: Error) => {
      if (this.#gone) return;
      this.#gone = true;
      onFailed();
      for (const answer of this.#waiting.values()) answer({ status: "failure", error });
      this.#waiting.clear();
    };
    this.#worker.on("error", fail);
    this.#worker.once("exit", () => fail(new Error("the span export's post thread exited")));
    // Only a post in flight keeps the process alive, an idle thread never.
    this.#worker.unref();
  }

  send(body: Uint8Array, timeoutMs: number): Promise<ExportResponse> {
    const id = ++this.#posts;
    return new Promise((answer) => {
      this.#waiting.set(id, answer);
      this.#worker.ref();
      this.#worker.postMessage({ id, body, timeoutMs } satisfies PostRequest);
    });
  }

  /** Stops the thread (the export is shut down: nothing is in flight). */
  close(): void {
    this.#gone = true;
    void this.#worker.terminate();
  }
}
