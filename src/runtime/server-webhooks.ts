/**
 * Webhook delivery in a long-lived server process (the Node server, `deno task serve`):
 * the dispatcher (webhooks/dispatcher.ts) over the service's event log, the registry and
 * the rollout's store (its leases), hinted by this process's commits. Web-standard: the
 * runtime brings only its timers' `unref`.
 *
 * ```ts
 * const webhooks = serverWebhooks({ metrics, unref });
 * const wired = wire({ ..., notifier: webhooks.notifier(new InProcessNotifier()),
 *   webhooks: { resolve, deliveries: webhooks.deliveries } });
 * webhooks.start();
 * // on shutdown: await webhooks.stop();
 * ```
 */
import type { Notifier } from "../live/notifier.ts";
import type { Metrics } from "../model/metrics.ts";
import { changedThreadsOf } from "../webhooks/changed-threads.ts";
import { type DispatcherOptions, WebhookDispatcher } from "../webhooks/dispatcher.ts";
import type { DeliveriesContext } from "./wire.ts";

export interface ServerWebhooksOptions {
  metrics?: Metrics;
  unref?: (timer: ReturnType<typeof setTimeout>) => void;
  /** The dispatcher's tunables (tests: fast sweeps, short timeouts, a clock). */
  tuning?: Partial<Omit<DispatcherOptions, "registry" | "events" | "leaseStore" | "checkUrl">>;
}

export interface ServerWebhooks {
  /** `inner`, whose hints (this process's commits) also reach the dispatcher. */
  notifier(inner: Notifier): Notifier;
  /** `WebhookWiring.deliveries`: builds the dispatcher (once). */
  deliveries(context: DeliveriesContext): WebhookDispatcher;
  /** Starts delivering (call once `wire` has returned, outside any request). */
  start(): void;
  /** Stops delivering: attempts in flight abandoned, cursors written, leases handed back. */
  stop(): Promise<void>;
  readonly dispatcher: WebhookDispatcher | null;
}

export function serverWebhooks(options: ServerWebhooksOptions = {}): ServerWebhooks {
  let dispatcher: WebhookDispatcher | null = null;
  return {
    notifier: (inner) => ({
      notify(tenant, threadId, seq) {
        inner.notify(tenant, threadId, seq);
        dispatcher?.hint(tenant, threadId, seq);
      },
      subscribe: (tenant, threadId, listener) => inner.subscribe(tenant, threadId, listener),
      close: () => inner.close(),
    }),
    deliveries(context) {
      if (dispatcher) throw new Error("serverWebhooks: one dispatcher per process");
      const { service, blobStore } = context.stores;
      dispatcher = new WebhookDispatcher({
        registry: context.registry,
        events: service,
        changedThreads: changedThreadsOf(service),
        leaseStore: blobStore,
        checkUrl: context.checkUrl,
        retryMs: context.config.webhookRetryMs,
        retryBaseMs: context.config.webhookRetryBaseMs,
        sweepMs: context.config.webhookSweepMs,
        leaseMs: context.config.webhookLeaseMs,
        ...(options.metrics ? { metrics: options.metrics } : {}),
        ...(options.unref ? { unref: options.unref } : {}),
        ...options.tuning,
      });
      return dispatcher;
    },
    start: () => void dispatcher?.start(),
    stop: () => dispatcher?.stop() ?? Promise.resolve(),
    get dispatcher() {
      return dispatcher;
    },
  };
}
