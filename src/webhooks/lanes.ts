/**
 * A lane: one (webhook, thread) as the dispatcher delivers it. Its state and the pure
 * steps of it (what is known to exist, what was acknowledged, what is written, since when
 * what waits has been waiting); the dispatcher does the I/O and the timers.
 */
import type { WebhookMessage } from "../model/webhook.ts";

type Timer = ReturnType<typeof setTimeout>;

/**
 * When seqs became known, kept per lane for the oldest-undelivered age: at most this many
 * marks; past them the newest mark takes the new seqs (their age overstated, never
 * understated; the oldest marks, the ones the gauge reads, stay exact).
 */
export const MAX_MARKS = 32;
/**
 * Seqs learned this close together share one mark (ms): the age is a gauge in seconds,
 * and a lane of a busy thread under 20 webhooks would otherwise make a mark per commit
 * per webhook (garbage on the write path).
 */
export const MARK_GRAIN_MS = 1000;

export interface Lane {
  readonly threadId: string;
  /** The last seq acknowledged (or passed over); null until the durable cursor is read. */
  delivered: number | null;
  /** The cursor as last written. */
  durable: number;
  flushedAt: number;
  /** The highest seq known to exist. */
  known: number;
  /** [seq, when it became known], oldest first. */
  marks: [number, number][];
  /**
   * While behind: a lower bound of the thread's `updatedAt` (wall-clock ms, less the clock
   * skew allowed), so the sweep horizon handed to the next holder stays at or before it.
   */
  behindFrom: number;
  running: boolean;
  queued: boolean;
  /** News arrived while running: read the log again before stopping. */
  dirty: boolean;
  /** Waiting for a retry. */
  retryTimer: Timer | null;
  flushTimer: Timer | null;
  /** The message of the event being delivered (its body's timestamp stays the same across retries). */
  message: { seq: number; message: WebhookMessage } | null;
  /** Attempts at the current event. */
  attempt: number;
  /** When the current event first failed. */
  failingSince: number | null;
  /** Bumped by a replay: whatever was in flight before it does not move the lane. */
  generation: number;
  idleSince: number;
  /** Cursor writes, in order. */
  writes: Promise<void>;
}

export function newLane(threadId: string, now: number): Lane {
  return {
    threadId,
    delivered: null,
    durable: 0,
    flushedAt: 0,
    known: 0,
    marks: [],
    behindFrom: Infinity,
    running: false,
    queued: false,
    dirty: false,
    retryTimer: null,
    flushTimer: null,
    message: null,
    attempt: 0,
    failingSince: null,
    generation: 0,
    idleSince: now,
    writes: Promise.resolve(),
  };
}

/** `seq` exists, learned at `now`; the thread changed no earlier than `changedFrom` (Infinity: says nothing). */
export function noteSeq(lane: Lane, seq: number, now: number, changedFrom: number): void {
  lane.behindFrom = Math.min(lane.behindFrom, changedFrom);
  if (seq <= lane.known) return;
  lane.known = seq;
  // Seqs learned within MARK_GRAIN_MS, or past MAX_MARKS, join the newest mark (its time,
  // the earlier: ageing conservatively): a busy thread costs each of its lanes a comparison
  // per commit, not a mark.
  const marks = lane.marks;
  const last = marks[marks.length - 1];
  if (last && (now - last[1] < MARK_GRAIN_MS || marks.length >= MAX_MARKS)) {
    last[0] = seq;
    return;
  }
  marks.push([seq, now]);
}

/** `seq` was acknowledged (or passed over): the next event starts afresh. */
export function advance(lane: Lane, seq: number): void {
  lane.delivered = seq;
  lane.message = null;
  lane.attempt = 0;
  lane.failingSince = null;
  while (lane.marks.length > 0 && (lane.marks[0] as [number, number])[0] <= seq) lane.marks.shift();
}

/** The log has nothing after `delivered`. */
export function caughtUp(lane: Lane, now: number): void {
  lane.known = Math.max(lane.known, lane.delivered ?? 0);
  lane.marks = [];
  lane.behindFrom = Infinity;
  lane.idleSince = now;
}

/** Moves the lane back to `since` (a replay): what is in flight will not move it. */
export function rewind(lane: Lane, since: number, changedFrom: number): void {
  lane.generation++;
  lane.delivered = since;
  lane.message = null;
  lane.attempt = 0;
  lane.failingSince = null;
  lane.behindFrom = Math.min(lane.behindFrom, changedFrom);
}

/** Caught up, written, and nothing running or waiting: it can be forgotten (its cursor is durable). */
export function isIdle(lane: Lane): boolean {
  return !lane.running && !lane.queued && !lane.retryTimer && !lane.flushTimer && lane.delivered !== null &&
    lane.delivered === lane.durable && lane.known <= lane.delivered;
}

/** Events known to wait, and since when the oldest of them has been known (null: none). */
export function backlogOf(lane: Lane): { events: number; since: number | null } | null {
  if (lane.delivered === null || lane.known <= lane.delivered) return null;
  return { events: lane.known - lane.delivered, since: lane.marks[0]?.[1] ?? null };
}
