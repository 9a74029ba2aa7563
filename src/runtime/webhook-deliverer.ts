/**
 * Workers: webhook delivery (API.md "Webhooks"), one Durable Object per webhook
 * (`idFromName(tenant NUL webhookId)`), bound as `WEBHOOKS`, with storage alarms; and
 * the Worker's and the sequencer's side of it (docs/decisions.md "Workers: webhooks").
 *
 * - **Per (webhook, thread), in seq order, at least once.** The object is the webhook's
 *   only deliverer (no lease: there is exactly one object per name in the world), and
 *   single-threaded: each thread with pending work is a lane that reads the service's
 *   event log after its cursor and sends one event at a time with `deliverOnce`; `s+1`
 *   only after a `2xx` for `s`, up to 4 threads at once.
 * - **Work survives a restart.** Lanes with pending work live in the object's storage
 *   (`lane:<threadId>`: the last seq acknowledged, the retry state), written after every
 *   `2xx`, and work runs only in `alarm()`: an alarm persists, fires again after a
 *   restart or eviction, and is retried by the platform if its handler fails. A restart
 *   repeats at most the attempt in flight per lane.
 * - **Cursors** in the registry (R2) follow in batches (at most once a second or every
 *   100 events per lane, and always on catching up, on waiting for a retry and on
 *   halting); the lane in storage is ahead of them and wins while it exists.
 * - **Retries** by alarm at `retryDelayMs`; the retry window (`failingSince`) is stored,
 *   so a restart does not start it again. After `WEBHOOK_RETRY_HOURS` the webhook turns
 *   `failing`; a `410` pauses it; a deleted webhook clears the object.
 * - **Finding work**: hints (`/hint`) from the thread's sequencer after each commit (and
 *   from a Worker without the sequencer), `/changed` from the routes (a webhook with
 *   `threads` gets a lane per thread at once; a resumed one starts its lanes again).
 *
 * Calls are `fetch` to the stub, like the sequencer's (no `cloudflare:workers` import).
 */
import type { BlobStore } from "../blob/port.ts";
import { logger } from "../logging/logger.ts";
import { describeError } from "../model/errors.ts";
import { TENANT_PATTERN, THREAD_ID_PATTERN, threadKey } from "../model/ids.ts";
import type { Notifier } from "../live/notifier.ts";
import type { LogEvent } from "../model/patch.ts";
import { eventNameOf, retryDelayMs, type Webhook, webhookFollows, webhookMessage } from "../model/webhook.ts";
import { isWebhookId } from "../model/webhook-ids.ts";
import { type Metrics, noMetrics } from "../model/metrics.ts";
import { AnalyticsEngineMetrics, isAnalyticsEngineDataset } from "./analytics-engine.ts";
import { type AttemptResult, deliverOnce, deliveryRecord } from "../webhooks/deliver.ts";
import type { DeliveryRecord, WebhookDeliveries } from "../webhooks/port.ts";
import { BlobWebhookRegistry } from "../webhooks/registry.ts";
import { checkWebhookUrl } from "../webhooks/url-policy.ts";
import type { DurableObjectNamespaceLike } from "./sequencer.ts";
import { wireService } from "./wire.ts";
import { loadWorkerContext, type WorkerEnv } from "./workers-context.ts";

const log = logger("webhooks");

/** The Durable Object storage API the deliverer uses, structurally. */
export interface DelivererStorageLike {
  get<T>(key: string): Promise<T | undefined>;
  list<T>(options: { prefix: string }): Promise<Map<string, T>>;
  put(key: string, value: unknown): Promise<void>;
  delete(key: string): Promise<boolean>;
  deleteAll(): Promise<void>;
  getAlarm(): Promise<number | null>;
  setAlarm(at: number): Promise<void>;
  deleteAlarm(): Promise<void>;
}

export interface DelivererStateLike {
  storage: DelivererStorageLike;
  blockConcurrencyWhile<T>(work: () => Promise<T>): Promise<T>;
  waitUntil(promise: Promise<unknown>): void;
}

/** One (webhook, thread) with pending work, as stored under `lane:<threadId>`. */
interface LaneRecord {
  threadId: string;
  /** The last seq acknowledged (or passed over); null until the registry's cursor is read. */
  delivered: number | null;
  /** The highest seq hinted (UNKNOWN: read the log to find out); nothing past it is read for. */
  known: number;
  /** Attempts at the event after `delivered`. */
  attempt: number;
  /** When that event first failed (wall-clock ms). */
  failingSince: number | null;
  /** Its message's `timestamp` (the same body on every retry, restarts included). */
  message: { seq: number; timestamp: string } | null;
  /** Not before (wall-clock ms): 0 is due now. */
  nextAt: number;
  /** Caught up since (wall-clock ms; Infinity: not caught up). */
  idleSince: number;
}

interface Lane extends LaneRecord {
  /** The cursor as last written to the registry (not stored: unknown after a restart). */
  durable: number | null;
  flushedAt: number;
  /** Bumped by every hint: a run that found the log empty before it looks again. */
  version: number;
  /** Bumped by a replay: what was in flight before it does not move the lane. */
  generation: number;
  running: boolean;
}

/** One alarm's work, stopped by a halt, a change or a delete. */
interface Run {
  readonly abort: AbortController;
  stopped: boolean;
}

/** A lane's `known` when what the log holds is unknown: it is read. */
const UNKNOWN = Number.MAX_SAFE_INTEGER;
/** Attempts kept for `/recent`. */
const RECENT = 100;
/** Events read per log query. */
const BATCH = 100;
/** Lanes of one webhook delivered at once. */
const CONCURRENCY = 4;
/** One alarm works at most this long, then hands over to the next (alarms have a wall-clock limit). */
const RUN_MS = 60_000;
const CURSOR_FLUSH_MS = 1000;
/** A caught-up lane is let go (its cursor written to the registry) after this long without news. */
const IDLE_LANE_MS = 10_000;
/** The webhook read from the registry is trusted this long (changes through the routes come by `/changed` at once). */
const WEBHOOK_TTL_MS = 10_000;
const CURSOR_FLUSH_EVENTS = 100;
/** After the registry could not be read, the next look (ms). */
const REGISTRY_RETRY_MS = 5000;

/** The Durable Object class bound as `WEBHOOKS` (wrangler.toml). */
export class WebhookDeliverer {
  readonly #state: DelivererStateLike;
  readonly #env: WorkerEnv;
  #wired: ReturnType<typeof wireDeliverer> | undefined;
  /** (tenant, webhookId): this object's name, stored on the first call (an alarm carries none). */
  #name: { tenant: string; webhookId: string } | null = null;
  readonly #lanes = new Map<string, Lane>();
  #recent: DeliveryRecord[] = [];
  #run: Run | null = null;
  /** The webhook as last read (every change comes by `/changed`, which reads it again). */
  #read: { at: number; webhook: Webhook | null } | null = null;
  /** A hint or change came during a run: it looks again before it ends. */
  #again = false;

  constructor(state: DelivererStateLike, env: WorkerEnv) {
    this.#state = state;
    this.#env = env;
    void state.blockConcurrencyWhile(async () => {
      this.#name = (await state.storage.get<{ tenant: string; webhookId: string }>("name")) ?? null;
      this.#recent = (await state.storage.get<DeliveryRecord[]>("recent")) ?? [];
      for (const record of (await state.storage.list<LaneRecord>({ prefix: "lane:" })).values()) {
        this.#lanes.set(record.threadId, {
          ...record,
          durable: null,
          flushedAt: 0,
          version: 0,
          generation: 0,
          running: false,
        });
      }
    });
  }

  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const tenant = url.searchParams.get("tenant") ?? "";
    const webhookId = url.searchParams.get("webhook") ?? "";
    // Only the Worker and the sequencer call here, with ids they validated; refuse anything else all the same.
    if (!TENANT_PATTERN.test(tenant) || !isWebhookId(webhookId)) {
      return invalid("the deliverer needs a tenant and a webhook");
    }
    if (!this.#name) {
      this.#name = { tenant, webhookId };
      await this.#state.storage.put("name", this.#name);
    } else if (this.#name.tenant !== tenant || this.#name.webhookId !== webhookId) {
      return invalid("not this deliverer's webhook");
    }
    try {
      switch (url.pathname) {
        case "/hint": {
          const { threads } = (await request.json()) as { threads: { threadId: string; seq: number }[] };
          for (const { threadId, seq } of threads) {
            if (THREAD_ID_PATTERN.test(threadId) && Number.isSafeInteger(seq)) await this.#hint(threadId, seq);
          }
          await this.#wake();
          return new Response(null, { status: 204 });
        }
        case "/changed":
          await this.#changed();
          return new Response(null, { status: 204 });
        case "/recent": {
          const limit = Number(url.searchParams.get("limit") ?? RECENT);
          return Response.json({ deliveries: this.#recent.slice(-Math.max(0, limit)).reverse() });
        }
        case "/replay": {
          const { threadId, since } = (await request.json()) as { threadId: string; since: number };
          if (!THREAD_ID_PATTERN.test(threadId) || !Number.isSafeInteger(since) || since < 0) {
            return invalid("replay needs a threadId and a seq");
          }
          await this.#replay(threadId, since);
          return new Response(null, { status: 204 });
        }
        default:
          return invalid(`no deliverer route ${url.pathname}`, 404);
      }
    } catch (error) {
      log.warn("webhook deliverer call failed: {error}", { tenant, webhookId, error: describeError(error) });
      return Response.json({ code: "unavailable", detail: "the webhook deliverer failed; retry" }, { status: 503 });
    }
  }

  /** Delivers what is due; then the next alarm is set for what waits (none: no alarm). */
  async alarm(): Promise<void> {
    const name = this.#name;
    if (!name) return;
    let webhook: Webhook | null;
    try {
      webhook = await this.#webhook(name);
    } catch (error) {
      // Not left to the platform's alarm retries (6, then the alarm is gone): a later look of our own.
      log.warn("webhook {webhookId}: the registry could not be read: {error}", {
        tenant: name.tenant,
        webhookId: name.webhookId,
        error: describeError(error),
      });
      await this.#state.storage.setAlarm(Date.now() + REGISTRY_RETRY_MS);
      return;
    }
    if (!webhook) return this.#clear();
    if (webhook.status !== "active") return; // Resumed by `/changed`; lanes keep their state meanwhile.
    const run: Run = { abort: new AbortController(), stopped: false };
    this.#run = run;
    const started = Date.now();
    try {
      do {
        this.#again = false;
        const due = [...this.#lanes.values()].filter((lane) => lane.nextAt <= Date.now() && !lane.running);
        await inPool(due, CONCURRENCY, (lane) => run.stopped ? Promise.resolve() : this.#runLane(webhook, lane, run));
      } while (this.#again && !run.stopped && Date.now() - started < RUN_MS);
    } finally {
      if (this.#run === run) this.#run = null;
      await this.#state.storage.put("recent", this.#recent);
    }
    if (run.stopped) return;
    await this.#schedule(this.#again ? Date.now() : undefined);
  }

  /** The webhook, read from the registry at most once per WEBHOOK_TTL_MS (and on every `/changed`). */
  async #webhook(name: { tenant: string; webhookId: string }): Promise<Webhook | null> {
    if (this.#read && Date.now() - this.#read.at < WEBHOOK_TTL_MS) return this.#read.webhook;
    const at = Date.now();
    const webhook = await this.#wiring().registry.get(name.tenant, name.webhookId);
    this.#read = { at, webhook };
    return webhook;
  }

  // --- calls ---

  async #hint(threadId: string, seq: number): Promise<void> {
    const lane = this.#laneOf(threadId);
    lane.version++;
    lane.known = Math.max(lane.known, seq);
    lane.idleSince = Infinity;
    // A hint never cuts a retry's wait short.
    if (lane.attempt === 0) lane.nextAt = 0;
    await this.#save(lane);
  }

  /** Wakes the work: the running alarm looks again, or an alarm is set for now. */
  async #wake(): Promise<void> {
    if (this.#run) this.#again = true;
    else await this.#schedule(Date.now());
  }

  async #changed(): Promise<void> {
    const name = this.#name as { tenant: string; webhookId: string };
    this.#read = null;
    const webhook = await this.#webhook(name);
    // Whatever runs now works on what it read before: it stops (its attempts in flight are made again).
    this.#stop();
    if (!webhook) return this.#clear();
    if (webhook.status !== "active") {
      await this.#state.storage.deleteAlarm();
      return;
    }
    // A new (or changed) webhook with threads delivers each from its cursor (what is there
    // is unknown: read it); a resumed one starts afresh.
    for (const threadId of webhook.threads ?? []) this.#laneOf(threadId).known = UNKNOWN;
    for (const lane of this.#lanes.values()) {
      lane.version++;
      lane.attempt = 0;
      lane.failingSince = null;
      lane.nextAt = 0;
      await this.#save(lane);
    }
    await this.#schedule(Date.now());
  }

  /** The cursor moves back to `since` (never forward), durably before this answers. */
  async #replay(threadId: string, since: number): Promise<void> {
    const name = this.#name as { tenant: string; webhookId: string };
    const { registry } = this.#wiring();
    const lane = this.#laneOf(threadId);
    const cursor = lane.delivered ?? await registry.cursor(name.tenant, name.webhookId, threadId);
    if (since >= cursor) return;
    lane.version++;
    lane.generation++;
    Object.assign(lane, { delivered: since, known: UNKNOWN, attempt: 0, failingSince: null, message: null, nextAt: 0 });
    await this.#save(lane);
    await registry.setCursor(name.tenant, name.webhookId, threadId, since);
    lane.durable = since;
    await this.#wake();
  }

  // --- lanes ---

  /** Delivers one lane until it is caught up, waits for a retry, or the run stops. */
  async #runLane(webhook: Webhook, lane: Lane, run: Run): Promise<void> {
    const { registry, service } = this.#wiring();
    lane.running = true;
    try {
      lane.delivered ??= lane.durable = await registry.cursor(webhook.tenant, webhook.id, lane.threadId);
      for (;;) {
        const version = lane.version;
        const generation = lane.generation;
        // Past the highest seq hinted there is nothing to read (the hint came after the commit):
        // no query, and no look at the rollout that an empty page from the cache costs.
        const events = (lane.delivered as number) < lane.known
          ? await service.readEvents(webhook.tenant, lane.threadId, lane.delivered as number, BATCH)
          : [];
        if (run.stopped) return;
        if (lane.generation !== generation) continue; // a replay moved it meanwhile
        if (events.length === 0) {
          // (An ended life's events are not sent: the log skipped them.)
          if (lane.version === version) lane.known = lane.delivered as number;
          const idle = Date.now() - lane.idleSince >= IDLE_LANE_MS;
          // Caught up. Its cursor is exact in storage: the registry's follows at most once a
          // second, and once the lane has been idle for IDLE_LANE_MS it is written and the lane let go.
          await this.#flush(webhook, lane, idle);
          if (lane.version !== version) continue; // hinted meanwhile: look again
          if (idle && lane.delivered === lane.durable) {
            this.#lanes.delete(lane.threadId);
            await this.#state.storage.delete(laneKey(lane.threadId));
            return;
          }
          if (lane.idleSince === Infinity) lane.idleSince = Date.now();
          lane.nextAt = lane.idleSince + IDLE_LANE_MS;
          await this.#save(lane);
          return;
        }
        for (const event of events) {
          if (run.stopped || lane.generation !== generation) break;
          const next = await this.#deliver(webhook, lane, event, run, generation);
          if (next === "stop") return;
          if (next === "wait") {
            await this.#flush(webhook, lane, true);
            return;
          }
        }
        await this.#flush(webhook, lane, false);
      }
    } catch (error) {
      // The log, the registry or the storage failed: this lane is tried again a little later.
      log.warn("webhook {webhookId}, thread {threadId}: {error}; trying again", {
        tenant: webhook.tenant,
        webhookId: webhook.id,
        threadId: lane.threadId,
        error: describeError(error),
      });
      lane.nextAt = Date.now() + Math.max(this.#wiring().config.webhookRetryBaseMs, 1000);
      await this.#save(lane).catch(() => {});
    } finally {
      lane.running = false;
    }
  }

  /** One event: `next` after its 2xx (or when it is not followed), `wait` for a retry, `stop` when the run ended. */
  async #deliver(
    webhook: Webhook,
    lane: Lane,
    event: LogEvent,
    run: Run,
    generation: number,
  ): Promise<"next" | "wait" | "stop"> {
    const { checkUrl, config, metrics } = this.#wiring();
    if (!webhookFollows(webhook, lane.threadId, eventNameOf(event))) {
      Object.assign(lane, { delivered: event.seq, attempt: 0, failingSince: null, message: null });
      await this.#save(lane);
      return "next";
    }
    if (lane.message?.seq !== event.seq) {
      lane.message = { seq: event.seq, timestamp: new Date().toISOString() };
      lane.attempt = 0;
      lane.failingSince = null;
    }
    const message = await webhookMessage(webhook.tenant, lane.threadId, event, new Date(lane.message.timestamp));
    const result = await deliverOnce(webhook, message, { checkUrl, signal: run.abort.signal });
    // Abandoned (a change, a delete, a halt): made again later.
    if (run.stopped || ("error" in result && result.error === "aborted")) return "stop";
    lane.attempt++;
    if (lane.attempt > 1) metrics.webhookRetried();
    metrics.webhookDelivered(result.outcome, result.seconds);
    const now = Date.now();
    const record = deliveryRecord(message, lane.threadId, event.seq, lane.attempt, result, now);
    if (result.outcome === "delivered") {
      this.#record(record);
      // A replay moved the lane while this was in flight: it goes on from there.
      if (lane.generation !== generation) return "next";
      Object.assign(lane, { delivered: event.seq, attempt: 0, failingSince: null, message: null });
      await this.#save(lane);
      return "next";
    }
    if (result.outcome === "gone") {
      this.#record(record);
      await this.#halt(
        webhook,
        run,
        "paused",
        `the receiver answered 410 Gone to event ${event.seq} of thread ${lane.threadId}`,
      );
      return "stop";
    }
    lane.failingSince ??= now;
    if (now - lane.failingSince >= config.webhookRetryMs) {
      this.#record(record);
      await this.#save(lane);
      await this.#halt(
        webhook,
        run,
        "failing",
        `no 2xx for event ${event.seq} of thread ${lane.threadId} after retrying for ${
          Math.round(config.webhookRetryMs / 60_000)
        } min (last: ${describeAttempt(result)})`,
      );
      return "stop";
    }
    const delay = retryDelayMs(lane.attempt, config.webhookRetryBaseMs);
    lane.nextAt = now + delay;
    this.#record({ ...record, nextAttemptAt: new Date(lane.nextAt).toISOString() });
    await this.#save(lane);
    return "wait";
  }

  /** The webhook turns `status` in the registry; the run stops; lanes and cursors stay for a resume. */
  async #halt(webhook: Webhook, run: Run, status: "failing" | "paused", reason: string): Promise<void> {
    if (run.stopped) return;
    run.stopped = true;
    run.abort.abort();
    this.#read = null;
    const { registry } = this.#wiring();
    log.warn("webhook {webhookId} is now {status}: {reason}", {
      tenant: webhook.tenant,
      webhookId: webhook.id,
      status,
      reason,
    });
    for (const lane of this.#lanes.values()) await this.#flush(webhook, lane, true).catch(() => {});
    const current = await registry.get(webhook.tenant, webhook.id);
    if (current?.status === "active") {
      await registry.update({ ...current, status, statusReason: reason, updatedAt: new Date().toISOString() });
    }
    await this.#state.storage.deleteAlarm();
  }

  /** Writes the lane's cursor to the registry if it moved and a write is due (`force`: whenever it moved). */
  async #flush(webhook: Webhook, lane: Lane, force: boolean): Promise<void> {
    const delivered = lane.delivered;
    if (delivered === null || delivered === lane.durable) return;
    const due = force || Date.now() - lane.flushedAt >= CURSOR_FLUSH_MS ||
      delivered - (lane.durable ?? 0) >= CURSOR_FLUSH_EVENTS;
    if (!due) return;
    await this.#wiring().registry.setCursor(webhook.tenant, webhook.id, lane.threadId, delivered);
    lane.durable = delivered;
    lane.flushedAt = Date.now();
  }

  #stop(): void {
    const run = this.#run;
    if (!run) return;
    run.stopped = true;
    run.abort.abort();
    this.#run = null;
  }

  /** The webhook is gone: so is everything of it here (its cursors went with it in the registry). */
  async #clear(): Promise<void> {
    this.#stop();
    this.#lanes.clear();
    this.#recent = [];
    await this.#state.storage.deleteAlarm();
    await this.#state.storage.deleteAll();
    // Calls may come again (a late hint): the name stays known.
    if (this.#name) await this.#state.storage.put("name", this.#name);
  }

  /** The next alarm: `at`, or the earliest lane due (none waiting: no alarm). */
  async #schedule(at?: number): Promise<void> {
    let next = at ?? Infinity;
    for (const lane of this.#lanes.values()) next = Math.min(next, Math.max(lane.nextAt, Date.now()));
    if (next === Infinity) {
      await this.#state.storage.deleteAlarm();
      return;
    }
    const current = await this.#state.storage.getAlarm();
    if (current === null || current > next || this.#run === null) await this.#state.storage.setAlarm(next);
  }

  #laneOf(threadId: string): Lane {
    let lane = this.#lanes.get(threadId);
    if (!lane) {
      lane = {
        threadId,
        delivered: null,
        known: 0,
        attempt: 0,
        failingSince: null,
        message: null,
        nextAt: 0,
        idleSince: Infinity,
        durable: null,
        flushedAt: 0,
        version: 0,
        generation: 0,
        running: false,
      };
      this.#lanes.set(threadId, lane);
    }
    return lane;
  }

  /** The lane's stored part (only while it is one of this object's lanes: a cleared one is not written back). */
  async #save(lane: Lane): Promise<void> {
    if (this.#lanes.get(lane.threadId) !== lane) return;
    const { durable: _d, flushedAt: _f, version: _v, generation: _g, running: _r, ...record } = lane;
    await this.#state.storage.put(laneKey(lane.threadId), record satisfies LaneRecord);
  }

  #record(record: DeliveryRecord): void {
    this.#recent.push(record);
    if (this.#recent.length > RECENT) this.#recent.splice(0, this.#recent.length - RECENT);
  }

  #wiring(): ReturnType<typeof wireDeliverer> {
    return this.#wired ??= wireDeliverer(this.#env, this.#state);
  }
}

/** The object's service (its event log), registry and URL policy, built on first use. */
function wireDeliverer(env: WorkerEnv, state: DelivererStateLike) {
  const context = loadWorkerContext(env);
  // With the optional Analytics Engine binding: the attempts, as /metrics counts them on Node (no budget: long-lived).
  const metrics: Metrics = isAnalyticsEngineDataset(env.METRICS)
    ? new AnalyticsEngineMetrics(env.METRICS, Infinity)
    : noMetrics;
  const { service, blobStore } = wireService({
    ...context,
    repairBehindEveryMs: 0,
    background: (work) => state.waitUntil(work),
    metrics,
  });
  const policy = { allowHttpLoopback: context.config.webhookAllowHttpLoopback, resolve: null };
  return {
    service,
    registry: new BlobWebhookRegistry(blobStore),
    config: context.config,
    metrics,
    checkUrl: (url: string) => checkWebhookUrl(url, policy),
  };
}

function laneKey(threadId: string): string {
  return `lane:${threadId}`;
}

function invalid(detail: string, status = 400): Response {
  return Response.json({ code: "invalid_request", detail }, { status });
}

function describeAttempt(result: AttemptResult): string {
  return "error" in result ? result.error : `HTTP ${result.status}`;
}

async function inPool<T>(items: T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}

/**
 * The Worker's and the sequencer's side: calls to a webhook's object. Failures throw
 * (the caller decides: a route answers 503, a hint is logged and the next one carries it).
 */
export class WebhookDelivererClient {
  readonly #namespace: DurableObjectNamespaceLike;

  constructor(namespace: DurableObjectNamespaceLike) {
    this.#namespace = namespace;
  }

  hint(tenant: string, webhookId: string, threads: { threadId: string; seq: number }[]): Promise<Response> {
    return this.#call(tenant, webhookId, "/hint", { method: "POST", body: JSON.stringify({ threads }) });
  }

  changed(tenant: string, webhookId: string): Promise<Response> {
    return this.#call(tenant, webhookId, "/changed", { method: "POST" });
  }

  async recent(tenant: string, webhookId: string, limit: number): Promise<DeliveryRecord[]> {
    const response = await this.#call(tenant, webhookId, `/recent`, {}, `&limit=${limit}`);
    return ((await response.json()) as { deliveries: DeliveryRecord[] }).deliveries;
  }

  async replay(tenant: string, webhookId: string, threadId: string, since: number): Promise<void> {
    await this.#call(tenant, webhookId, "/replay", { method: "POST", body: JSON.stringify({ threadId, since }) });
  }

  async #call(tenant: string, webhookId: string, path: string, init: RequestInit, query = ""): Promise<Response> {
    const stub = this.#namespace.get(this.#namespace.idFromName(threadKey(tenant, webhookId)));
    const url = `https://webhook-deliverer${path}?tenant=${encodeURIComponent(tenant)}&webhook=${
      encodeURIComponent(webhookId)
    }${query}`;
    const response = await stub.fetch(url, init);
    if (!response.ok) {
      const text = await response.text().catch(() => "");
      throw new Error(`the webhook deliverer answered ${response.status} to ${path}: ${text.slice(0, 200)}`);
    }
    return response;
  }
}

/**
 * The routes' deliveries on Workers: the webhook's object answers `recent` and `replay`;
 * `changed` is sent after the answer (`background`: the request's waitUntil).
 */
export class WorkerDeliveries implements WebhookDeliveries {
  readonly #client: WebhookDelivererClient;
  readonly #background: (work: Promise<unknown>) => void;

  constructor(client: WebhookDelivererClient, background: ((work: Promise<unknown>) => void) | undefined) {
    this.#client = client;
    this.#background = background ?? ((work) => void work);
  }

  recent(tenant: string, webhookId: string, limit: number): Promise<DeliveryRecord[]> {
    return this.#client.recent(tenant, webhookId, limit);
  }

  replay(tenant: string, webhookId: string, threadId: string, since: number): Promise<void> {
    return this.#client.replay(tenant, webhookId, threadId, since);
  }

  changed(tenant: string, webhookId: string): void {
    // Writers of this isolate see the change at once (others within SUBSCRIPTIONS_TTL_MS).
    subscriptions.delete(tenant);
    this.#background(
      this.#client.changed(tenant, webhookId).then(
        () => {},
        (error) =>
          log.warn("webhook {webhookId}: its deliverer was not told of a change: {error}", {
            tenant,
            webhookId,
            error: describeError(error),
          }),
      ),
    );
  }
}

/** How long a writer trusts the tenant's subscriptions it read (ms). */
export const SUBSCRIPTIONS_TTL_MS = 10_000;

/**
 * The tenants' subscriptions as this isolate last read them (one listing per tenant per
 * TTL). Resolved values only: a Worker request may not wait on another request's I/O.
 */
const subscriptions = new Map<string, { at: number; webhooks: Webhook[] }>();

/** A writer's notifier that also hints the webhooks' deliverers (see `hintingNotifier`). */
export interface HintingNotifier extends Notifier {
  /** Reads the tenant's subscriptions now if they are stale (a write came in: its hint will need them). */
  warm(tenant: string): void;
}

/**
 * `inner`, whose hints (commits) also reach the deliverers of the tenant's webhooks that
 * follow the thread, after the commit (`background`: the object's or the request's
 * waitUntil, never holding the answer). The tenant's subscriptions are read from the
 * registry at most about once per `ttlMs` per isolate: a webhook created just now is
 * hinted by a writer that read them before within `ttlMs` (at once by writers of the
 * isolate that served the change).
 */
export function hintingNotifier(
  inner: Notifier,
  options: {
    blobStore: BlobStore;
    deliverers: WebhookDelivererClient;
    background: (work: Promise<unknown>) => void;
    ttlMs?: number;
  },
): HintingNotifier {
  const registry = new BlobWebhookRegistry(options.blobStore);
  const ttl = options.ttlMs ?? SUBSCRIPTIONS_TTL_MS;
  const fresh = (tenant: string) => {
    const cached = subscriptions.get(tenant);
    return cached && Date.now() - cached.at < ttl ? cached.webhooks : null;
  };
  const webhooksOf = async (tenant: string): Promise<Webhook[]> => {
    const cached = fresh(tenant);
    if (cached) return cached;
    const at = Date.now();
    const webhooks = await registry.list(tenant, { limit: 1000 });
    subscriptions.set(tenant, { at, webhooks });
    return webhooks;
  };
  return {
    notify(tenant, threadId, seq) {
      inner.notify(tenant, threadId, seq);
      options.background((async () => {
        try {
          const following = (await webhooksOf(tenant)).filter((webhook) =>
            webhook.threads === null || webhook.threads.includes(threadId)
          );
          await Promise.all(
            following.map((webhook) =>
              options.deliverers.hint(tenant, webhook.id, [{ threadId, seq }]).then((response) =>
                response.body?.cancel()
              )
            ),
          );
        } catch (error) {
          // The next commit's hint carries this one's events too (the lane reads the log after its cursor).
          log.warn("webhook hints for thread {threadId} failed: {error}", {
            tenant,
            threadId,
            error: describeError(error),
          });
        }
      })());
    },
    warm(tenant) {
      if (fresh(tenant)) return;
      options.background(webhooksOf(tenant).catch(() => {}));
    },
    subscribe: (tenant, threadId, listener) => inner.subscribe(tenant, threadId, listener),
    close: () => inner.close(),
  };
}
