/**
 * The metrics port on Workers: the same events as Prometheus gets on Node and Deno,
 * written to Workers Analytics Engine when the optional `METRICS` binding (an
 * AnalyticsEngineDataset) is configured. One data point per event, laid out alike for
 * every event so one SQL table answers every question:
 *
 *   index1 = blob1 = the Prometheus family the event feeds (`http_server_request_duration_seconds`, ...)
 *   blob2.. = its label values, in the order of API.md's labels
 *   double1 = the observed value (seconds, patches, +1/-1 for a stream opening/closing)
 *
 * What does not carry over: `http_server_active_requests` (a gauge of one isolate's
 * requests means nothing across a fleet; Workers' own analytics count requests),
 * `artifacts_webhook_deliveries_total` (the count of the points of
 * `artifacts_webhook_delivery_duration_seconds` by outcome, as requests are counted), and
 * `artifacts_cache_up` is written when an isolate first learns the cache's state and
 * when it changes, not on every call. Labels hold no ids, as on Prometheus. Writes never
 * fail a request: the platform accepts 250 data points per invocation; past that (or on
 * any error) a point is dropped.
 */
import type {
  LimitName,
  Metrics,
  StoreName,
  StoreOutcome,
  StreamKind,
  StreamMetrics,
  WebhookOutcome,
} from "../model/metrics.ts";

/** The binding's shape (no workers-types dependency). */
export interface AnalyticsEngineDatasetLike {
  writeDataPoint(point: { indexes?: string[]; blobs?: (string | null)[]; doubles?: number[] }): void;
}

export function isAnalyticsEngineDataset(binding: unknown): binding is AnalyticsEngineDatasetLike {
  return typeof (binding as AnalyticsEngineDatasetLike | undefined)?.writeDataPoint === "function";
}

/** What the isolate last wrote for the cache's state (written again only when it changes). */
let lastCacheUp: boolean | undefined;

/** The invocation limit, with headroom for anything else the Worker writes. */
const POINTS_PER_RECORDER = 200;

export class AnalyticsEngineMetrics implements Metrics {
  readonly #dataset: AnalyticsEngineDatasetLike;
  #budget: number;

  /** `budget`: points this recorder may write (a Worker wires one per request, i.e. per invocation). */
  constructor(dataset: AnalyticsEngineDatasetLike, budget = POINTS_PER_RECORDER) {
    this.#dataset = dataset;
    this.#budget = budget;
  }

  requestStarted(): void {}

  requestEnded(method: string, route: string, status: number, seconds: number): void {
    this.#write("http_server_request_duration_seconds", [method, route, String(status)], seconds);
  }

  committed(patches: number): void {
    this.#write("artifacts_commit_patches", [], patches);
  }

  commitConflict(): void {
    this.#write("artifacts_commit_conflicts_total", [], 1);
  }

  storeCall(store: StoreName, operation: string, outcome: StoreOutcome, seconds: number): void {
    this.#write("artifacts_store_request_duration_seconds", [store, operation, outcome], seconds);
  }

  streamOpened(kind: StreamKind): StreamMetrics {
    this.#write("artifacts_sse_streams", [kind], 1);
    let sent = 0;
    let closed = false;
    return {
      // Summed and written once at the end: a long stream would spend the invocation's points.
      eventsSent: (count) => {
        sent += count;
      },
      closed: () => {
        if (closed) return;
        closed = true;
        this.#write("artifacts_sse_streams", [kind], -1);
        if (sent > 0) this.#write("artifacts_sse_events_sent_total", [kind], sent);
      },
    };
  }

  cacheUp(up: boolean): void {
    if (lastCacheUp === up) return;
    lastCacheUp = up;
    this.#write("artifacts_cache_up", [], up ? 1 : 0);
  }

  cacheRepaired(): void {
    this.#write("artifacts_cache_repairs_total", [], 1);
  }

  rateLimited(limit: LimitName): void {
    this.#write("artifacts_rate_limited_total", [limit], 1);
  }

  streamStalled(kind: StreamKind): void {
    this.#write("artifacts_sse_stalled_total", [kind], 1);
  }

  webhookDelivered(outcome: WebhookOutcome, seconds: number): void {
    // One point per attempt: the count by outcome is the points' count, as for requests.
    this.#write("artifacts_webhook_delivery_duration_seconds", [outcome], seconds);
  }

  webhookRetried(): void {
    this.#write("artifacts_webhook_retries_total", [], 1);
  }

  webhookBacklog(events: number, oldestSeconds: number): void {
    this.#write("artifacts_webhook_backlog_events", [], events);
    this.#write("artifacts_webhook_oldest_undelivered_seconds", [], oldestSeconds);
  }

  #write(family: string, labels: string[], value: number): void {
    if (this.#budget <= 0) return;
    this.#budget--;
    try {
      this.#dataset.writeDataPoint({ indexes: [family], blobs: [family, ...labels], doubles: [value] });
    } catch {
      // Over the platform's limit, or the binding failing: a metric is never worth a request.
    }
  }
}
