/**
 * An event stream's response body (see EventBody): web-standard streams only, so the
 * same on Node, Deno and workerd.
 */
/** Why a write gave up: the body ended while it waited (the stream is over either way). */
class BodyEnded extends Error {
  constructor() {
    super("the event stream's body has ended");
    this.name = "BodyEnded";
  }
}

/**
 * A stream's response body, handed over one chunk per read of whoever consumes it (the
 * runtime, writing to the socket): nothing is queued here (high-water mark 0), `write`
 * waits until the runtime asks for the next chunk. So what a slow client costs the
 * process is bounded by:
 * - the one chunk a `write` is waiting to hand over (here, at most one per stream);
 * - what the runtime holds: on Node, @hono/node-server writes each chunk it reads to the
 *   response and reads no more while the socket's writable buffer is past its high-water
 *   mark (64 KiB) until 'drain', so at most that mark plus one chunk (≤ ~130 KiB with
 *   frames of 64 KiB payloads);
 * - the kernel's socket buffers, outside the process (a loopback socket whose client does
 *   not read took ~4 MB before its writes backed up).
 * Nothing else buffers between the stream and the socket (no TransformStream: Hono's
 * streamSSE held up to two more chunks per stream, and could not drop a connection).
 *
 * The body ends cleanly (`finish`, at the runtime's next read; `close`, now), is given
 * up by a client that went away (`cancel`, from the runtime), or fails (`fail`): a
 * stalled client's connection is dropped, which is what frees the runtime's buffer (a
 * clean end would wait behind the unread bytes).
 */
export class EventBody {
  readonly readable: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  /** The runtime's pending read (its pull), answered by the next chunk. */
  #wanted: (() => void) | null = null;
  /** Wakes the write waiting for the next read. */
  #writer: (() => void) | null = null;
  #ended = false;
  #onCancel: () => void = () => {};

  constructor() {
    this.readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: () =>
        new Promise<void>((resolve) => {
          this.#wanted = resolve;
          this.#wakeWriter();
        }),
      cancel: () => {
        this.#end();
        this.#onCancel();
      },
    }, { highWaterMark: 0 });
  }

  /** Called once if the runtime gives up the body (its client went away). */
  onCancel(listener: () => void): void {
    this.#onCancel = listener;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** True when the runtime is not asking for a chunk: a write now would wait. */
  get backedUp(): boolean {
    return this.#wanted === null;
  }

  /** Hands `chunk` to the runtime's next read; rejects (BodyEnded) if the body ends first. */
  write(chunk: Uint8Array): Promise<void> {
    return this.#handOver(chunk);
  }

  /**
   * A clean end at the runtime's next read: it reads again only once it could write out
   * what it held, so a clean end is not left queued behind bytes a client never reads.
   */
  finish(): Promise<void> {
    return this.#handOver(null);
  }

  /** A clean end now (the runtime ends the response once it has sent what it has). */
  close(): void {
    if (this.#end()) this.#controller.close();
  }

  /** The body fails: the runtime drops the connection, and with it what it buffered. */
  fail(reason: unknown): void {
    if (this.#end()) this.#controller.error(reason);
  }

  async #handOver(chunk: Uint8Array | null): Promise<void> {
    while (this.#wanted === null && !this.#ended) {
      await new Promise<void>((resolve) => {
        this.#writer = resolve;
      });
    }
    if (this.#ended) throw new BodyEnded();
    const answer = this.#wanted as () => void;
    this.#wanted = null;
    if (chunk) this.#controller.enqueue(chunk);
    else this.close();
    answer();
  }

  /** Ends the body once (true the first time); a waiting write gives up. */
  #end(): boolean {
    if (this.#ended) return false;
    this.#ended = true;
    this.#wakeWriter();
    this.#wanted?.();
    this.#wanted = null;
    return true;
  }

  #wakeWriter(): void {
    const resume = this.#writer;
    this.#writer = null;
    resume?.();
  }
}
