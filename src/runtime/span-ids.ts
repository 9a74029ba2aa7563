/**
 * Trace and span ids for the Node server's tracer: random (Math.random, as the SDK's
 * `RandomIdGenerator`), never all zeros (an invalid id), kept as 32-bit words and written
 * as lowercase hex only when something asks for the hex (a span context: the log's trace
 * id, a `traceparent`, a link).
 *
 * Why words: the OTLP encoder writes an id's bytes (otlp-protobuf.ts), and a create's
 * four spans carry twelve ids (trace, span, parent); reading them back out of hex took
 * ~4 µs of a traced create in a profile of the server. Why not the SDK's generator: it
 * writes each id into a shared Buffer and reads it back with `toString("hex")`, a call
 * into the runtime per id.
 */
/** The char codes of "0123456789abcdef". */
const HEX = [48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102] as const;

/** A random unsigned 32-bit word. */
const randomWord = () => (Math.random() * 0x100000000) >>> 0;

/** Eight lowercase hex digits of `a` then eight of `b`. */
function hex64(a: number, b: number): string {
  return String.fromCharCode(
    HEX[a >>> 28]!,
    HEX[(a >>> 24) & 15]!,
    HEX[(a >>> 20) & 15]!,
    HEX[(a >>> 16) & 15]!,
    HEX[(a >>> 12) & 15]!,
    HEX[(a >>> 8) & 15]!,
    HEX[(a >>> 4) & 15]!,
    HEX[a & 15]!,
    HEX[b >>> 28]!,
    HEX[(b >>> 24) & 15]!,
    HEX[(b >>> 20) & 15]!,
    HEX[(b >>> 16) & 15]!,
    HEX[(b >>> 12) & 15]!,
    HEX[(b >>> 8) & 15]!,
    HEX[(b >>> 4) & 15]!,
    HEX[b & 15]!,
  );
}

/** The 32-bit word of the eight hex digits of `hex` from `at` (a valid id's: checked by whoever made it a context). */
const wordOf = (hex: string, at: number) => Number.parseInt(hex.slice(at, at + 8), 16) >>> 0;

/** A trace id: 16 bytes as four big-endian words, first to last. */
export class TraceId {
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
  #hex: string | undefined;

  constructor(w0: number, w1: number, w2: number, w3: number, hex?: string) {
    this.w0 = w0;
    this.w1 = w1;
    this.w2 = w2;
    this.w3 = w3;
    this.#hex = hex;
  }

  /** A valid id's 32 lowercase hex digits (a caller's, from its `traceparent`) as words. */
  static fromHex(hex: string): TraceId {
    return new TraceId(wordOf(hex, 0), wordOf(hex, 8), wordOf(hex, 16), wordOf(hex, 24), hex.toLowerCase());
  }

  /** The 32 lowercase hex digits, made once. */
  get hex(): string {
    return this.#hex ??= hex64(this.w0, this.w1) + hex64(this.w2, this.w3);
  }
}

/** A span id: 8 bytes as two big-endian words. */
export class SpanId {
  readonly high: number;
  readonly low: number;
  #hex: string | undefined;

  constructor(high: number, low: number, hex?: string) {
    this.high = high;
    this.low = low;
    this.#hex = hex;
  }

  /** A valid id's 16 lowercase hex digits as words. */
  static fromHex(hex: string): SpanId {
    return new SpanId(wordOf(hex, 0), wordOf(hex, 8), hex.toLowerCase());
  }

  /** The 16 lowercase hex digits, made once. */
  get hex(): string {
    return this.#hex ??= hex64(this.high, this.low);
  }
}

/** New random ids (the Node tracer's). */
export class SpanIds {
  traceId(): TraceId {
    const a = randomWord();
    const b = randomWord();
    const c = randomWord();
    let d = randomWord();
    if ((a | b | c | d) === 0) d = 1;
    return new TraceId(a, b, c, d);
  }

  spanId(): SpanId {
    const a = randomWord();
    let b = randomWord();
    if ((a | b) === 0) b = 1;
    return new SpanId(a, b);
  }
}
