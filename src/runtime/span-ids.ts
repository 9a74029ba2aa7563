/**
 * Trace and span ids for the Node server's tracer: random (Math.random, as the SDK's
 * `RandomIdGenerator`), never all zeros (an invalid id), as lowercase hex.
 *
 * Why not the SDK's generator: it writes each id into a shared Buffer and reads it back
 * with `toString("hex")`, a call into the runtime per id, and a create makes five ids
 * (one trace, four spans). Here the hex string is built in one `String.fromCharCode`.
 */
import type { IdGenerator } from "@opentelemetry/sdk-trace";

/** The char codes of "0123456789abcdef". */
const HEX = [48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102] as const;

/** A random unsigned 32-bit word. */
const word = () => (Math.random() * 0x100000000) >>> 0;

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

export class SpanIds implements IdGenerator {
  /** 16 random bytes as 32 hex digits. */
  generateTraceId(): string {
    const a = word();
    const b = word();
    const c = word();
    let d = word();
    if ((a | b | c | d) === 0) d = 1;
    return hex64(a, b) + hex64(c, d);
  }

  /** 8 random bytes as 16 hex digits. */
  generateSpanId(): string {
    const a = word();
    let b = word();
    if ((a | b) === 0) b = 1;
    return hex64(a, b);
  }
}
