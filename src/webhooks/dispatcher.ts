/**
 * The webhook dispatcher of a long-lived server process (Node, `deno task serve`): it
 * delivers the events of the durable log to the subscriptions of the registry, as API.md
 * "Webhooks" promises, and answers the deliveries port (recent attempts, replay, changes).
 *
 * - **Per (webhook, thread), in seq order, at least once.** A lane per (webhook, thread)
 *   reads the log after its cursor and sends one event at a time; event `s+1` is sent only
 *   after `s` got a `2xx`. A failure is retried after `retryDelayMs` (exponential from
 *   WEBHOOK_RETRY_BASE_MS, doubling up to an hour, jittered) for WEBHOOK_RETRY_HOURS from
 *   the event's first failure; then the webhook turns `failing` and waits. `410 Gone`
 *   pauses it. A webhook not `active` (or deleted) delivers nothing; once `active` again it
 *   resumes at its cursors. Events the webhook does not subscribe to (`events`) are passed
 *   over (its cursor moves past them).
 * - **Cursors** move only after a `2xx`, and are written at most once a second per lane
 *   (or after `cursorFlushEvents` acknowledged events, and always when a lane catches up
 *   or a webhook stops): a crash repeats at most that much, never skips.
 * - **Off the request.** A commit only leaves a hint (`hint`); lanes run on this
 *   dispatcher's own loop, outside every request's trace and log context.
 * - **Which process.** A lease per webhook (./lease.ts): one process delivers a webhook
 *   at a time; another takes over when the lease expires.
 * - **Finding work.** (a) Hints from this process's commits (immediate). (b) A sweep every
 *   `sweepMs`: a webhook with `threads` has each thread's head checked against its lane;
 *   an every-thread webhook lists the threads changed since its horizon (`changedThreads`,
 *   by the cache's `updatedAt`). (c) `changed` reads one webhook again at once.
 */
import type { BlobStore } from "../blob/port.ts";
import { logger } from "../logging/logger.ts";
import { describeError } from "../model/errors.ts";
import { threadKey } from "../model/ids.ts";
import { type Metrics, noMetrics } from "../model/metrics.ts";
import type { LogEvent } from "../model/patch.ts";
import { eventNameOf, retryDelayMs, type Webhook, webhookFollows, webhookMessage } from "../model/webhook.ts";
import type { ChangedThread, ChangedThreads } from "./changed-threads.ts";
import { type AttemptResult, type CheckUrl, deliverOnce, type DeliveryFetch, deliveryRecord } from "./deliver.ts";
import type { DeliveryGate } from "./writes-first.ts";
import { DetachedLoop } from "./detached-loop.ts";
import { advance, backlogOf, caughtUp, isIdle, type Lane, newLane, noteSeq, rewind } from "./lanes.ts";
import { BlobLeases, type HeldLease, isHeld } from "./lease.ts";
import type { DeliveryRecord, WebhookDeliveries, WebhookRegistry } from "./port.ts";

const log = logger("webhooks");

/** The event log as the dispatcher reads it (the service: the same reader the streams use). */
export interface WebhookEventSource {
  /** Events after `afterSeq`, ascending and contiguous (a deleted life's are skipped: its tombstone is next). */
  readEvents(tenant: string, threadId: string, afterSeq: number, limit: number): Promise<LogEvent[]>;
  /** The seq of the thread's last commit (0: none). */
  head(tenant: string, threadId: string): Promise<number>;
}

export type { ChangedThread, ChangedThreads };

export interface DispatcherOptions {
  registry: WebhookRegistry;
  events: WebhookEventSource;
  /**
   * How every-thread webhooks find the writes of other processes (and what a restart left
   * undelivered). Absent: only this process's hints (one process, and nothing left over
   * after a restart). See `changedThreadsOf` (./changed-threads.ts).
   */
  changedThreads?: ChangedThreads;
  /** Where the leases live (the rollout's store: every process of the deployment shares it). */
  leaseStore: BlobStore;
  /** Asked before every attempt (the subscriptions side's `checkWebhookUrl`). */
  checkUrl: CheckUrl;
  /** How long one event is retried before its webhook turns `failing` (ms; WEBHOOK_RETRY_HOURS). */
  retryMs: number;
  /** The first retry's delay (ms; WEBHOOK_RETRY_BASE_MS). */
  retryBaseMs: number;
  /** The attempts' HTTP client (default: the global fetch). */
  fetch?: DeliveryFetch;
  /** One attempt's deadline (ms; default 10 s). */
  attemptTimeoutMs?: number;
  /** How often the registry and the threads are looked at without a hint (ms; default 5 s). */
  sweepMs?: number;
  /** A lease's length (ms; default 30 s): renewed every third; a dead holder's webhooks wait at most this long. */
  leaseMs?: number;
  /**
   * How far another process's clock (its commits' `updatedAt`), or a late cache update, may
   * lag: every-thread sweeps look back this much further than they need to (ms; default 60 s).
   */
  clockSkewMs?: number;
  /** A lane writes its cursor at most this often while it delivers (ms; default 1 s)... */
  cursorFlushMs?: number;
  /** ...or once this many events are acknowledged since its last write (default 100). */
  cursorFlushEvents?: number;
  /** Threads of one webhook delivered at once (default 4). */
  concurrency?: number;
  /** Changed threads an every-thread sweep looks at per round (default 1000); the rest on the next rounds. */
  scanPerSweep?: number;
  /** This process in lease objects (default: a random id). */
  holder?: string;
  /** Asked before each log read and each attempt (default: always go; the server's: writes first). */
  gate?: DeliveryGate;
  /** The wall clock (ms): retry windows, leases, signatures. */
  now?: () => number;
  random?: () => number;
  metrics?: Metrics;
  unref?: (timer: ReturnType<typeof setTimeout>) => void;
}

/** Attempts kept per webhook for `recent` (in this process only). */
const RECENT = 100;
/** Events read per log query. */
const BATCH = 100;
/** An every-thread webhook's caught-up lane is forgotten after this long without news (its cursor is durable). */
const IDLE_LANE_MS = 5 * 60_000;

type Timer = ReturnType<typeof setTimeout>;

/** A webhook this process holds the lease of and delivers. */
interface Held {
  readonly key: string;
  webhook: Webhook;
  readonly lease: HeldLease;
  /** Until when the lease is surely ours (wall-clock ms): a renewal that fails past it lets the webhook go. */
  leaseUntil: number;
  readonly lanes: Map<string, Lane>;
  readonly queue: Lane[];
  running: number;
  readonly runs: Set<Promise<void>>;
  stopped: boolean;
  readonly abort: AbortController;
  /** Every-thread: threads changed at or after this were not all looked at yet (wall-clock ms). */
  scanFrom: number;
  scan: { startedAt: number; threads: AsyncIterator<ChangedThread> } | null;
  retired: Promise<void> | null;
}

type Retirement = "deleted" | "inactive" | "halted" | "lost" | "shutdown";

export class WebhookDispatcher implements WebhookDeliveries {
  readonly #registry: WebhookRegistry;
  readonly #events: WebhookEventSource;
  readonly #changedThreads: ChangedThreads | undefined;
  readonly #leases: BlobLeases;
  readonly #checkUrl: CheckUrl;
  readonly #fetch: DeliveryFetch | undefined;
  readonly #retryMs: number;
  readonly #retryBaseMs: number;
  readonly #attemptTimeoutMs: number | undefined;
  readonly #sweepMs: number;
  readonly #leaseMs: number;
  readonly #skewMs: number;
  readonly #flushMs: number;
  readonly #flushEvents: number;
  readonly #concurrency: number;
  readonly #gate: DeliveryGate | undefined;
  readonly #scanPerSweep: number;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #metrics: Metrics;
  readonly #unref: (timer: Timer) => void;

  /** Held webhooks by threadKey(tenant, id). */
  readonly #held = new Map<string, Held>();
  /** Held webhooks by tenant, for hints. */
  readonly #byTenant = new Map<string, Set<Held>>();
  /** Webhooks another process holds, and until when (no need to ask before). */
  readonly #foreign = new Map<string, number>();
  /** Recent attempts by webhook key, oldest first. */
  readonly #recent = new Map<string, DeliveryRecord[]>();
  /** One visit (acquire, update, retire) of a webhook at a time. */
  readonly #locks = new Map<string, Promise<void>>();
  /** Hints not yet applied: thread key → highest seq. */
  readonly #hints = new Map<string, { tenant: string; threadId: string; seq: number }>();
  #hintsPosted = false;
  /** Where hints and requests' tasks run: outside the request that caused them. */
  readonly #loop = new DetachedLoop((error) =>
    log.warn("webhook task failed: {error}", { error: describeError(error) })
  );
  #sweepTimer: Timer | null = null;
  #renewTimer: Timer | null = null;
  #sweeping: Promise<void> | null = null;
  #started = false;
  #stopped = false;

  constructor(options: DispatcherOptions) {
    this.#registry = options.registry;
    this.#events = options.events;
    this.#changedThreads = options.changedThreads;
    this.#checkUrl = options.checkUrl;
    this.#fetch = options.fetch;
    this.#retryMs = options.retryMs;
    this.#retryBaseMs = options.retryBaseMs;
    this.#attemptTimeoutMs = options.attemptTimeoutMs;
    this.#sweepMs = options.sweepMs ?? 5000;
    this.#leaseMs = options.leaseMs ?? 30_000;
    this.#skewMs = options.clockSkewMs ?? 60_000;
    this.#flushMs = options.cursorFlushMs ?? 1000;
    this.#flushEvents = options.cursorFlushEvents ?? 100;
    this.#concurrency = options.concurrency ?? 4;
    this.#gate = options.gate;
    this.#scanPerSweep = options.scanPerSweep ?? 1000;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#metrics = options.metrics ?? noMetrics;
    this.#unref = options.unref ?? (() => {});
    this.#leases = new BlobLeases(options.leaseStore, {
      holder: options.holder ?? crypto.randomUUID(),
      leaseMs: this.#leaseMs,
      now: this.#now,
    });
  }

  /** Starts the loop, the sweeps and the lease renewals. Call it outside any request. */
  start(): this {
    if (this.#started) return this;
    this.#started = true;
    this.#loop.start();
    this.#scheduleSweep(0);
    this.#scheduleRenewal();
    return this;
  }

  /**
   * Stops delivering: attempts in flight are abandoned (they will be repeated), cursors
   * written, leases handed back so another process takes over at once.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const timer of [this.#sweepTimer, this.#renewTimer]) if (timer) clearTimeout(timer);
    this.#loop.stop();
    await this.#sweeping?.catch(() => {});
    await Promise.all([...this.#held.values()].map((held) => this.#retire(held, "shutdown")));
    this.#metrics.webhookBacklog(0, 0);
  }

  /** A commit of this process: `threadId` has events up to `seq`. Cheap; the work happens later. */
  hint(tenant: string, threadId: string, seq: number): void {
    if (this.#stopped || !this.#byTenant.has(tenant)) return;
    const key = threadKey(tenant, threadId);
    const pending = this.#hints.get(key);
    if (!pending || pending.seq < seq) this.#hints.set(key, { tenant, threadId, seq });
    if (this.#hintsPosted) return;
    this.#hintsPosted = true;
    this.#post(() => {
      this.#hintsPosted = false;
      const hints = [...this.#hints.values()];
      this.#hints.clear();
      for (const hint of hints) this.#applyHint(hint.tenant, hint.threadId, hint.seq);
    });
  }

  recent(tenant: string, webhookId: string, limit: number): Promise<DeliveryRecord[]> {
    const records = this.#recent.get(threadKey(tenant, webhookId)) ?? [];
    return Promise.resolve(records.slice(-Math.max(0, limit)).reverse());
  }

  /**
   * The cursor of (webhook, thread) moves back to `since` (durably, before this resolves)
   * and delivery starts again from there. Never forward: a `since` past the cursor changes
   * nothing (moving it forward would skip events). If another process holds the webhook,
   * this one takes it over (the other stops at its next renewal; meanwhile both may send:
   * duplicates).
   */
  async replay(tenant: string, webhookId: string, threadId: string, since: number): Promise<void> {
    const key = threadKey(tenant, webhookId);
    const held = this.#held.get(key);
    if (held && !held.stopped) {
      const lane = this.#laneOf(held, threadId);
      lane.delivered ??= lane.durable = await this.#registry.cursor(tenant, webhookId, threadId);
      if (since >= lane.delivered) return;
      rewind(lane, since, this.#now() - this.#skewMs);
      if (lane.retryTimer) clearTimeout(lane.retryTimer);
      lane.retryTimer = null;
      await this.#writeCursor(held, lane, since);
      this.#post(() => this.#schedule(held, lane));
      return;
    }
    if (since >= (await this.#registry.cursor(tenant, webhookId, threadId))) return;
    await this.#registry.setCursor(tenant, webhookId, threadId, since);
    this.#post(() =>
      this.#locked(key, async () => {
        const webhook = await this.#registry.get(tenant, webhookId);
        if (!webhook || webhook.status !== "active") return;
        await this.#visit(webhook, { force: true });
        const taken = this.#held.get(key);
        if (taken) this.#schedule(taken, this.#laneOf(taken, threadId));
      })
    );
  }

  changed(tenant: string, webhookId: string): void {
    const key = threadKey(tenant, webhookId);
    this.#post(() =>
      this.#locked(key, async () => {
        const webhook = await this.#registry.get(tenant, webhookId);
        // Asked now, whatever was last seen of its lease (a webhook resumed after `failing` is free at once).
        if (webhook) return this.#visit(webhook, { fresh: true });
        this.#recent.delete(key);
        const held = this.#held.get(key);
        if (held) await this.#retire(held, "deleted");
      })
    );
  }

  // --- hints and requests' tasks, run outside the request that caused them ---

  #post(task: () => Promise<void> | void): void {
    if (!this.#stopped) this.#loop.post(task);
  }

  #applyHint(tenant: string, threadId: string, seq: number): void {
    const now = this.#now();
    for (const held of this.#byTenant.get(tenant) ?? []) {
      const threads = held.webhook.threads;
      if (held.stopped || (threads !== null && !threads.includes(threadId))) continue;
      const lane = this.#laneOf(held, threadId);
      noteSeq(lane, seq, now, now - this.#skewMs);
      this.#schedule(held, lane);
    }
  }

  // --- sweeps: the registry, leases, and threads with events past their cursor ---

  #scheduleSweep(delay: number): void {
    if (this.#stopped) return;
    this.#sweepTimer = setTimeout(() => {
      this.#sweeping = this.#sweep().finally(() => {
        this.#sweeping = null;
        this.#scheduleSweep(this.#sweepMs);
      });
    }, delay);
    this.#unref(this.#sweepTimer);
  }

  async #sweep(): Promise<void> {
    let webhooks: Webhook[];
    try {
      webhooks = await this.#registry.all();
    } catch (error) {
      log.warn("webhook sweep: the registry could not be listed: {error}", { error: describeError(error) });
      return;
    }
    const listed = new Set<string>();
    for (const webhook of webhooks) {
      if (this.#stopped) return;
      const key = threadKey(webhook.tenant, webhook.id);
      listed.add(key);
      try {
        await this.#locked(key, () => this.#visit(webhook, {}));
      } catch (error) {
        log.warn("webhook sweep of {webhookId} failed: {error}", {
          tenant: webhook.tenant,
          webhookId: webhook.id,
          error: describeError(error),
        });
      }
    }
    for (const [key, held] of this.#held) {
      if (listed.has(key)) continue;
      // Not listed: deleted, unless the listing was behind (then it is visited as usual).
      const { tenant, id } = held.webhook;
      await this.#locked(key, async () => {
        const webhook = await this.#registry.get(tenant, id);
        await (webhook ? this.#visit(webhook, {}) : this.#retire(held, "deleted"));
      }).catch((error) =>
        log.warn("webhook sweep of {webhookId} failed: {error}", {
          tenant,
          webhookId: id,
          error: describeError(error),
        })
      );
    }
    for (const key of this.#foreign.keys()) if (!listed.has(key)) this.#foreign.delete(key);
    for (const key of this.#recent.keys()) if (!listed.has(key) && !this.#held.has(key)) this.#recent.delete(key);
    this.#forgetIdleLanes();
    this.#reportBacklog();
  }

  /** Runs `work` after every earlier one of the same webhook. */
  #locked(key: string, work: () => Promise<void>): Promise<void> {
    const previous = this.#locks.get(key) ?? Promise.resolve();
    const next = previous.then(work, work);
    const tail = next.catch(() => {});
    this.#locks.set(key, tail);
    void tail.then(() => {
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    });
    return next;
  }

  /** Takes up (lease), updates, or lets go of one webhook as the registry has it, then looks for its work. */
  async #visit(webhook: Webhook, options: { force?: boolean; fresh?: boolean }): Promise<void> {
    const key = threadKey(webhook.tenant, webhook.id);
    let held = this.#held.get(key);
    if (webhook.status !== "active") {
      if (held) await this.#retire(held, "inactive");
      return;
    }
    if (this.#stopped) return;
    if (!held) {
      if (!options.force && !options.fresh && (this.#foreign.get(key) ?? 0) > this.#now()) return;
      const lease = await this.#leases.acquire(webhook.tenant, webhook.id, { force: options.force ?? false });
      if (!isHeld(lease)) {
        this.#foreign.set(key, lease.until);
        return;
      }
      this.#foreign.delete(key);
      if (this.#stopped) {
        await lease.release(lease.sweptFrom);
        return;
      }
      held = {
        key,
        webhook,
        lease,
        leaseUntil: this.#now() + this.#leaseMs,
        lanes: new Map(),
        queue: [],
        running: 0,
        runs: new Set(),
        stopped: false,
        abort: new AbortController(),
        // A webhook follows threads from its creation: those unchanged since are not looked at.
        scanFrom: lease.sweptFrom ?? Date.parse(webhook.createdAt) - this.#skewMs,
        scan: null,
        retired: null,
      };
      this.#held.set(key, held);
      let tenantSet = this.#byTenant.get(webhook.tenant);
      if (!tenantSet) this.#byTenant.set(webhook.tenant, tenantSet = new Set());
      tenantSet.add(held);
      log.debug("webhook {webhookId} taken up", { tenant: webhook.tenant, webhookId: webhook.id });
    } else {
      this.#update(held, webhook);
    }
    await this.#discover(held);
  }

  #update(held: Held, webhook: Webhook): void {
    const before = held.webhook;
    held.webhook = webhook;
    if (before.url === webhook.url && before.secret === webhook.secret) return;
    // A new address or secret: what waits for a retry is tried again now.
    for (const lane of held.lanes.values()) {
      if (!lane.retryTimer) continue;
      clearTimeout(lane.retryTimer);
      lane.retryTimer = null;
      this.#schedule(held, lane);
    }
  }

  async #discover(held: Held): Promise<void> {
    const { tenant, threads } = held.webhook;
    if (threads !== null) {
      for (const threadId of threads) {
        if (held.stopped) return;
        const lane = this.#laneOf(held, threadId);
        if (lane.delivered !== null && !lane.running && !lane.retryTimer) {
          const head = await this.#events.head(tenant, threadId);
          if (head <= lane.delivered) continue;
          this.#note(lane, head);
        }
        this.#schedule(held, lane);
      }
      return;
    }
    if (!this.#changedThreads) return;
    held.scan ??= {
      startedAt: this.#now(),
      threads: this.#changedThreads(tenant, held.scanFrom)[Symbol.asyncIterator](),
    };
    const scan = held.scan;
    try {
      for (let looked = 0; looked < this.#scanPerSweep && !held.stopped; looked++) {
        const next = await scan.threads.next();
        if (next.done) {
          // Every thread changed since scanFrom was looked at: the next scan starts where this one did.
          held.scanFrom = scan.startedAt - this.#skewMs;
          held.scan = null;
          return;
        }
        const { threadId, seq, updatedAt } = next.value;
        const lane = held.lanes.get(threadId);
        if (lane?.delivered != null && seq <= lane.delivered) continue;
        const behind = lane ?? this.#laneOf(held, threadId);
        this.#note(behind, seq, Date.parse(updatedAt) - this.#skewMs);
        this.#schedule(held, behind);
      }
    } catch (error) {
      held.scan = null;
      throw error;
    }
  }

  /** Where a new holder must start looking (see LeaseRecord.sweptFrom). */
  #sweptFrom(held: Held): number | undefined {
    if (held.webhook.threads !== null) return undefined;
    let from = held.scanFrom;
    for (const lane of held.lanes.values()) from = Math.min(from, lane.behindFrom);
    return from;
  }

  #scheduleRenewal(): void {
    if (this.#stopped) return;
    this.#renewTimer = setTimeout(async () => {
      await Promise.all([...this.#held.values()].map((held) => this.#renew(held)));
      this.#scheduleRenewal();
    }, this.#leaseMs / 3);
    this.#unref(this.#renewTimer);
  }

  async #renew(held: Held): Promise<void> {
    if (held.stopped) return;
    try {
      if (await held.lease.renew(this.#sweptFrom(held))) {
        held.leaseUntil = this.#now() + this.#leaseMs;
        return;
      }
      log.info("webhook {webhookId}: another process took its lease over; stopping here", {
        tenant: held.webhook.tenant,
        webhookId: held.webhook.id,
      });
    } catch (error) {
      log.warn("webhook {webhookId}: the lease could not be renewed: {error}", {
        tenant: held.webhook.tenant,
        webhookId: held.webhook.id,
        error: describeError(error),
      });
      // Still ours for a while; past it another process may have it.
      if (this.#now() < held.leaseUntil - this.#leaseMs / 3) return;
    }
    await this.#locked(held.key, () => this.#retire(held, "lost"));
  }

  /**
   * Stops delivering a webhook here. Cursors are written unless it was deleted (its cursors
   * are gone with it) or the lease was lost (its new holder writes them); the lease is
   * handed back (removed with a deleted webhook).
   */
  #retire(held: Held, why: Retirement): Promise<void> {
    held.retired ??= (async () => {
      held.stopped = true;
      held.abort.abort();
      for (const lane of held.lanes.values()) {
        if (lane.retryTimer) clearTimeout(lane.retryTimer);
        if (lane.flushTimer) clearTimeout(lane.flushTimer);
        lane.retryTimer = lane.flushTimer = null;
      }
      if (this.#held.get(held.key) === held) this.#held.delete(held.key);
      const tenantSet = this.#byTenant.get(held.webhook.tenant);
      tenantSet?.delete(held);
      if (tenantSet?.size === 0) this.#byTenant.delete(held.webhook.tenant);
      await Promise.allSettled([...held.runs]);
      try {
        if (why !== "deleted" && why !== "lost") {
          await Promise.all([...held.lanes.values()].map((lane) => this.#flush(held, lane, true)));
        }
        if (why === "deleted") await held.lease.release(undefined, { forget: true });
        else if (why !== "lost") await held.lease.release(this.#sweptFrom(held));
      } catch (error) {
        log.warn("webhook {webhookId}: cursors or lease not written on stopping ({why}): {error}", {
          tenant: held.webhook.tenant,
          webhookId: held.webhook.id,
          why,
          error: describeError(error),
        });
      }
      log.debug("webhook {webhookId} let go ({why})", { tenant: held.webhook.tenant, webhookId: held.webhook.id, why });
    })();
    return held.retired;
  }

  // --- lanes ---

  #laneOf(held: Held, threadId: string): Lane {
    let lane = held.lanes.get(threadId);
    if (!lane) held.lanes.set(threadId, lane = newLane(threadId, this.#now()));
    return lane;
  }

  /** `seq` exists (a hint, a sweep); `changedFrom`: the thread changed no earlier than this. */
  #note(lane: Lane, seq: number, changedFrom = this.#now() - this.#skewMs): void {
    noteSeq(lane, seq, this.#now(), changedFrom);
  }

  #schedule(held: Held, lane: Lane): void {
    if (held.stopped) return;
    lane.dirty = true;
    if (lane.running || lane.queued || lane.retryTimer) return;
    if (held.running >= this.#concurrency) {
      lane.queued = true;
      held.queue.push(lane);
      return;
    }
    this.#start(held, lane);
  }

  #start(held: Held, lane: Lane): void {
    held.running++;
    lane.running = true;
    const run: Promise<void> = this.#run(held, lane).finally(() => {
      lane.running = false;
      held.running--;
      held.runs.delete(run);
      // News that came after the run's last look at the log (and no retry to wait for): look again.
      if (lane.dirty && !lane.retryTimer) this.#schedule(held, lane);
      const next = held.queue.shift();
      if (next) {
        next.queued = false;
        if (!held.stopped) this.#start(held, next);
      }
    });
    held.runs.add(run);
  }

  /** Delivers the lane's events until it is caught up, waits for a retry, or its webhook stops. */
  async #run(held: Held, lane: Lane): Promise<void> {
    const { tenant, id } = held.webhook;
    try {
      if (lane.delivered === null) {
        const cursor = await this.#registry.cursor(tenant, id, lane.threadId);
        // (a replay may have set it meanwhile)
        if (lane.delivered === null) lane.delivered = lane.durable = cursor;
      }
      while (!held.stopped) {
        lane.dirty = false;
        const generation = lane.generation;
        await this.#gate?.pass();
        if (held.stopped) return;
        const events = await this.#events.readEvents(tenant, lane.threadId, lane.delivered as number, BATCH);
        if (held.stopped) return;
        if (generation !== lane.generation) continue;
        if (events.length === 0) {
          caughtUp(lane, this.#now());
          await this.#flush(held, lane, false);
          if (lane.dirty) continue;
          return;
        }
        for (const event of events) {
          if (held.stopped || generation !== lane.generation) break;
          if (!(await this.#deliverEvent(held, lane, event, generation))) {
            // Waiting for a retry: what was acknowledged before it is written meanwhile (stopped: by retire).
            if (!held.stopped) await this.#flush(held, lane, false).catch(() => {});
            return;
          }
        }
        await this.#flush(held, lane, false);
      }
    } catch (error) {
      // The log or the cursor could not be read or written: try again a little later.
      log.warn("webhook {webhookId}, thread {threadId}: {error}; trying again", {
        tenant,
        webhookId: id,
        threadId: lane.threadId,
        error: describeError(error),
      });
      this.#retryAfter(held, lane, Math.max(this.#retryBaseMs, 1000));
    }
  }

  /** One event: true to go on with the next, false when the lane waits (a retry) or the webhook stopped. */
  async #deliverEvent(held: Held, lane: Lane, event: LogEvent, generation: number): Promise<boolean> {
    const webhook = held.webhook;
    // (Not a discovery: the horizon bound the lane got when it fell behind still holds.)
    this.#note(lane, event.seq, Infinity);
    if (!webhookFollows(webhook, lane.threadId, eventNameOf(event))) {
      advance(lane, event.seq);
      return true;
    }
    if (lane.message?.seq !== event.seq) {
      const message = await webhookMessage(webhook.tenant, lane.threadId, event, new Date(this.#now()));
      lane.message = { seq: event.seq, message };
      lane.attempt = 0;
      lane.failingSince = null;
    }
    const { message } = lane.message;
    await this.#gate?.pass();
    if (held.stopped) return false;
    lane.attempt++;
    if (lane.attempt > 1) this.#metrics.webhookRetried();
    const result = await deliverOnce(webhook, message, {
      checkUrl: this.#checkUrl,
      ...(this.#fetch ? { fetch: this.#fetch } : {}),
      ...(this.#attemptTimeoutMs === undefined ? {} : { timeoutMs: this.#attemptTimeoutMs }),
      now: this.#now,
      signal: held.abort.signal,
    });
    // Abandoned by a stop: not an attempt the receiver answered; it is made again later.
    if ("error" in result && result.error === "aborted") return false;
    this.#metrics.webhookDelivered(result.outcome, result.seconds);
    const record = deliveryRecord(message, lane.threadId, event.seq, lane.attempt, result, this.#now());
    if (generation !== lane.generation) {
      // A replay moved the lane meanwhile: the run starts again from there.
      this.#record(held, record);
      return !held.stopped;
    }
    if (result.outcome === "delivered") {
      this.#record(held, record);
      advance(lane, event.seq);
      return !held.stopped;
    }
    if (result.outcome === "gone") {
      this.#record(held, record);
      await this.#halt(
        held,
        "paused",
        `the receiver answered 410 Gone to event ${event.seq} of thread ${lane.threadId}`,
      );
      return false;
    }
    const now = this.#now();
    lane.failingSince ??= now;
    if (now - lane.failingSince >= this.#retryMs) {
      this.#record(held, record);
      await this.#halt(
        held,
        "failing",
        `no 2xx for event ${event.seq} of thread ${lane.threadId} after retrying for ${
          Math.round(this.#retryMs / 60_000)
        } min (last: ${describeAttempt(result)})`,
      );
      return false;
    }
    const delay = retryDelayMs(lane.attempt, this.#retryBaseMs, this.#random);
    this.#record(held, { ...record, nextAttemptAt: new Date(now + delay).toISOString() });
    this.#retryAfter(held, lane, delay);
    return false;
  }

  #retryAfter(held: Held, lane: Lane, delay: number): void {
    if (held.stopped) return;
    if (lane.retryTimer) clearTimeout(lane.retryTimer);
    lane.retryTimer = setTimeout(() => {
      lane.retryTimer = null;
      this.#schedule(held, lane);
    }, delay);
    this.#unref(lane.retryTimer);
  }

  /** Writes the lane's cursor if it moved and a write is due (`force`: whenever it moved). */
  async #flush(held: Held, lane: Lane, force: boolean): Promise<void> {
    const delivered = lane.delivered;
    if (delivered === null || delivered === lane.durable) return;
    const wait = this.#flushMs - (this.#now() - lane.flushedAt);
    if (!force && wait > 0 && delivered - lane.durable < this.#flushEvents) {
      if (!lane.flushTimer && !held.stopped) {
        lane.flushTimer = setTimeout(() => {
          lane.flushTimer = null;
          if (held.stopped) return;
          this.#flush(held, lane, true).catch((error) =>
            log.warn("webhook {webhookId}: a cursor could not be written: {error}", {
              tenant: held.webhook.tenant,
              webhookId: held.webhook.id,
              error: describeError(error),
            })
          );
        }, wait);
        this.#unref(lane.flushTimer);
      }
      return;
    }
    if (lane.flushTimer) clearTimeout(lane.flushTimer);
    lane.flushTimer = null;
    await this.#writeCursor(held, lane, delivered);
  }

  /** Cursor writes of a lane land in the order they were asked for (a replay's after a flush in flight). */
  async #writeCursor(held: Held, lane: Lane, seq: number): Promise<void> {
    const { tenant, id } = held.webhook;
    const write = lane.writes.then(() => this.#registry.setCursor(tenant, id, lane.threadId, seq));
    lane.writes = write.catch(() => {});
    await write;
    lane.durable = seq;
    lane.flushedAt = this.#now();
  }

  /** The webhook turns `status` (failing, paused) in the registry and stops here. */
  async #halt(held: Held, status: "failing" | "paused", reason: string): Promise<void> {
    if (held.stopped) return;
    // The other lanes stop now (their attempts in flight are abandoned and made again later).
    held.stopped = true;
    held.abort.abort();
    const { tenant, id } = held.webhook;
    log.warn("webhook {webhookId} is now {status}: {reason}", { tenant, webhookId: id, status, reason });
    try {
      const current = await this.#registry.get(tenant, id);
      if (current?.status === "active") {
        await this.#registry.update({
          ...current,
          status,
          statusReason: reason,
          updatedAt: new Date(this.#now()).toISOString(),
        });
      }
    } catch (error) {
      // Still `active` in the registry: the next sweep takes it up again and retries from its cursor.
      log.warn("webhook {webhookId}: could not be marked {status}: {error}", {
        tenant,
        webhookId: id,
        status,
        error: describeError(error),
      });
    }
    // Not awaited: this runs inside one of the lanes `retire` waits for.
    void this.#locked(held.key, () => this.#retire(held, "halted"));
  }

  #record(held: Held, record: DeliveryRecord): void {
    let records = this.#recent.get(held.key);
    if (!records) this.#recent.set(held.key, records = []);
    records.push(record);
    if (records.length > RECENT) records.splice(0, records.length - RECENT);
  }

  #forgetIdleLanes(): void {
    const before = this.#now() - IDLE_LANE_MS;
    for (const held of this.#held.values()) {
      if (held.webhook.threads !== null) continue;
      for (const [threadId, lane] of held.lanes) {
        if (isIdle(lane) && lane.idleSince < before) held.lanes.delete(threadId);
      }
    }
  }

  /** Events this process knows are waiting, over the webhooks it delivers, and the oldest one's age. */
  #reportBacklog(): void {
    let events = 0;
    let oldest = Infinity;
    for (const held of this.#held.values()) {
      for (const lane of held.lanes.values()) {
        const backlog = backlogOf(lane);
        if (!backlog) continue;
        events += backlog.events;
        if (backlog.since !== null) oldest = Math.min(oldest, backlog.since);
      }
    }
    this.#metrics.webhookBacklog(events, oldest === Infinity ? 0 : Math.max(0, (this.#now() - oldest) / 1000));
  }
}

function describeAttempt(result: AttemptResult): string {
  return "error" in result ? result.error : `HTTP ${result.status}`;
}
