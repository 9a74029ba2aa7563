/**
 * A `fetch` for the typed client that serves every request with an in-process app
 * (`app.request`) and lets a test break things on command: write requests that fail
 * before reaching the server or lose their answer, canned answers, answers held back,
 * event streams dropped mid-way (the reader sees a network error), paused (events
 * buffered, then delivered at once) or missing one chunk. Every request is recorded.
 */

export interface RecordedRequest {
  method: string;
  url: string;
  headers: Headers;
  body: string | undefined;
}

/** What the next write request meets: a network error before the server, an answer lost after it, or a canned answer. */
export type WriteFault =
  | { kind: "before" }
  | { kind: "after" }
  | { kind: "respond"; status: number; code: string; headers?: Record<string, string> };

interface OpenStream {
  url: string;
  drop: () => void;
  flush: () => void;
}

type Requester = { request: (input: string, init?: RequestInit) => Response | Promise<Response> };

export function controlledFetch(app: Requester) {
  const requests: RecordedRequest[] = [];
  const writeFaults: WriteFault[] = [];
  const streamFaults: WriteFault[] = [];
  const streams = new Set<OpenStream>();
  let paused = false;
  let answersHeld: { promise: Promise<void>; release: () => void } | null = null;
  let dropChunk: ((text: string) => boolean) | null = null;
  let onStreamRequest: ((headers: Headers) => void) | null = null;
  const decoder = new TextDecoder();
  /** A chunk was lost and no event was delivered after it: nothing on the stream shows the gap yet. */
  let lossUnrevealed = false;
  const deliver = (controller: ReadableStreamDefaultController<Uint8Array>, chunk: Uint8Array) => {
    if (lossUnrevealed && decoder.decode(chunk).includes("event:")) lossUnrevealed = false;
    controller.enqueue(chunk);
  };

  const fetch: typeof globalThis.fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const method = init?.method ?? "GET";
    const headers = new Headers(init?.headers);
    const isStream = headers.get("accept") === "text/event-stream";
    if (isStream && onStreamRequest) {
      const hook = onStreamRequest;
      onStreamRequest = null;
      hook(headers);
    }
    requests.push({ method, url, headers, body: typeof init?.body === "string" ? init.body : undefined });
    const forwarded: RequestInit = { ...init, headers };
    if (method !== "GET") {
      const fault = writeFaults.shift();
      if (fault?.kind === "before") throw new TypeError("fetch failed (injected: before reaching the server)");
      if (fault?.kind === "respond") return problem(fault);
      const response = await app.request(url, forwarded);
      if (fault?.kind === "after") {
        await response.arrayBuffer();
        throw new TypeError("fetch failed (injected: the answer was lost)");
      }
      if (answersHeld) await answersHeld.promise;
      return response;
    }
    if (!isStream) return app.request(url, forwarded);
    const fault = streamFaults.shift();
    if (fault?.kind === "before" || fault?.kind === "after") throw new TypeError("fetch failed (injected: stream)");
    if (fault?.kind === "respond") return problem(fault);
    const response = await app.request(url, forwarded);
    if (!response.ok || !response.body) return response;
    return new Response(controlled(url, response.body), { status: response.status, headers: response.headers });
  };

  function controlled(url: string, body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    const reader = body.getReader();
    const buffered: Uint8Array[] = [];
    let ended = false;
    let stream: OpenStream;
    return new ReadableStream<Uint8Array>({
      start(controller) {
        stream = {
          url,
          drop() {
            if (ended) return;
            ended = true;
            streams.delete(stream);
            controller.error(new TypeError("network error (injected: stream dropped)"));
            void reader.cancel().catch(() => {});
          },
          flush() {
            if (ended) return;
            for (const chunk of buffered.splice(0)) deliver(controller, chunk);
          },
        };
        streams.add(stream);
        void (async () => {
          try {
            for (;;) {
              const { done, value } = await reader.read();
              if (ended) return;
              if (done) break;
              if (dropChunk?.(decoder.decode(value))) {
                dropChunk = null;
                lossUnrevealed = true;
                continue;
              }
              if (paused) buffered.push(value);
              else deliver(controller, value);
            }
            ended = true;
            streams.delete(stream);
            controller.close();
          } catch (error) {
            if (ended) return;
            ended = true;
            streams.delete(stream);
            controller.error(error);
          }
        })();
      },
      cancel(reason) {
        ended = true;
        streams.delete(stream);
        return reader.cancel(reason);
      },
    });
  }

  return {
    fetch,
    requests,
    /** Requests whose URL contains `part` (and whose method is `method`, when given). */
    requestsTo(part: string, method?: string): RecordedRequest[] {
      return requests.filter((r) => r.url.includes(part) && (method === undefined || r.method === method));
    },
    /** The next write requests meet these faults, one each, in order. */
    failWrites(...faults: WriteFault[]): void {
      writeFaults.push(...faults);
    },
    /** Forgets the faults no request met yet. */
    clearFaults(): void {
      writeFaults.length = 0;
      streamFaults.length = 0;
      dropChunk = null;
    },
    /** Faults not yet met by an event-stream request. */
    get streamFaultsLeft(): number {
      return streamFaults.length;
    },
    /** The next event-stream requests meet these faults. */
    failStreams(...faults: WriteFault[]): void {
      streamFaults.push(...faults);
    },
    /** Write answers wait (the server has written) until `release()`. */
    holdAnswers(): () => void {
      let release!: () => void;
      const promise = new Promise<void>((resolve) => (release = resolve));
      answersHeld = { promise, release };
      return () => {
        answersHeld = null;
        release();
      };
    },
    /** Every open event stream fails now, as a dropped connection does. */
    dropStreams(): number {
      const open = [...streams];
      for (const stream of open) stream.drop();
      return open.length;
    },
    get openStreams(): number {
      return streams.size;
    },
    /** Event streams buffer what the server sends until `resumeStreams()`. */
    pauseStreams(): void {
      paused = true;
    },
    resumeStreams(): void {
      paused = false;
      for (const stream of streams) stream.flush();
    },
    /**
     * A chunk was lost (loseNextChunk) and no event has been delivered since: a reader has
     * nothing to tell the gap by until the next event (or a new stream).
     */
    get lossUnrevealed(): boolean {
      return lossUnrevealed;
    },
    /** The next chunk of any event stream whose text matches is never delivered (a lost event); null: none. */
    loseNextChunk(matches: ((text: string) => boolean) | null): void {
      dropChunk = matches;
    },
    /** Called with the next event-stream request's headers, which it may change. */
    onNextStreamRequest(hook: (headers: Headers) => void): void {
      onStreamRequest = hook;
    },
  };
}

export type ControlledFetch = ReturnType<typeof controlledFetch>;

function problem(fault: Extract<WriteFault, { kind: "respond" }>): Response {
  return new Response(
    JSON.stringify({
      type: "about:blank",
      title: fault.code,
      status: fault.status,
      code: fault.code,
      detail: "injected",
    }),
    { status: fault.status, headers: { "content-type": "application/problem+json", ...fault.headers } },
  );
}
