/**
 * Counts what the Worker's requests cost in subrequests, per request, in workerd: the
 * bundle runs under a main module of our own (`startWorker(..., { countSubrequests: true })`)
 * that wraps the global `fetch`, the Durable Object namespaces (`SEQUENCER`,
 * `TENANT_LIMITER`, `WEBHOOKS`) and the R2 binding, and attributes each call to the request
 * it serves through an AsyncLocalStorage (its context follows the request's promises,
 * timers and `waitUntil` work, and stops at a Durable Object call: the object runs as an
 * invocation of its own). So a request sent with `x-count-id: <id>` has its own list, read
 * back with `subrequestsOf(url, id)`; an event stream's list grows while it is open.
 *
 * What counts, as the platform counts it against the Worker's request: every `fetch`
 * (S3, libSQL over HTTP, a JWKS, a webhook's receiver), every call into a Durable Object
 * (a WebSocket to one included), every R2 call. The objects' own calls are counted per
 * invocation kind (`sequencer /write`, `deliverer alarm`, ...): each invocation of an
 * object is a request of its own, with its own limits. Nothing here is in the bundle a
 * deploy uploads.
 */

/** The main module that wraps the bundle (`app.js`). Plain JavaScript: workerd runs it as is. */
export const SUBREQUEST_COUNTER_MODULE = String.raw`
import { AsyncLocalStorage } from "node:async_hooks";
import worker, * as bundle from "./app.js";

const context = new AsyncLocalStorage();
/** Each counted Worker request's subrequests, by its x-count-id. */
const requests = new Map();
/** The objects' invocations by kind: how many, and their subrequests by what they were. */
const objects = new Map();

function record(what) {
  context.getStore()?.push(what);
}

function hostAndPath(input) {
  const url = new URL(input instanceof Request ? input.url : String(input));
  return url.host + url.pathname;
}

const originalFetch = globalThis.fetch;
globalThis.fetch = function countedFetch(input, init) {
  const method = init?.method ?? (input instanceof Request ? input.method : "GET");
  record("fetch " + method + " " + hostAndPath(input));
  return originalFetch.call(globalThis, input, init);
};

function countedNamespace(name, namespace) {
  return {
    idFromName: (value) => namespace.idFromName(value),
    idFromString: (value) => namespace.idFromString(value),
    newUniqueId: (options) => namespace.newUniqueId(options),
    get(id, options) {
      const stub = namespace.get(id, options);
      return {
        id: stub.id,
        name: stub.name,
        fetch(input, init) {
          record("object " + name + " " + new URL(input instanceof Request ? input.url : String(input)).pathname);
          return stub.fetch(input, init);
        },
      };
    },
  };
}

function countedBucket(bucket) {
  const counted = {};
  for (const method of ["head", "get", "put", "delete", "list", "createMultipartUpload", "resumeMultipartUpload"]) {
    counted[method] = (...args) => {
      record("r2 " + method);
      return bucket[method](...args);
    };
  }
  return counted;
}

const countedEnvs = new WeakMap();
function countedEnv(env) {
  let counted = countedEnvs.get(env);
  if (!counted) {
    counted = { ...env };
    for (const name of ["SEQUENCER", "TENANT_LIMITER", "WEBHOOKS"]) {
      if (env[name]) counted[name] = countedNamespace(name, env[name]);
    }
    if (env.ROLLOUTS) counted.ROLLOUTS = countedBucket(env.ROLLOUTS);
    countedEnvs.set(env, counted);
  }
  return counted;
}

function invocation(kind, run) {
  const entry = objects.get(kind) ?? { invocations: 0, logs: [] };
  objects.set(kind, entry);
  entry.invocations++;
  // The log stays open: what the invocation left running (a group it committed, for later
  // writes too) is counted as it happens, and read at the next snapshot.
  const log = [];
  entry.logs.push(log);
  return context.run(log, run);
}

function objectsSnapshot() {
  const out = {};
  for (const [kind, entry] of objects) {
    const subrequests = {};
    for (const log of entry.logs) for (const what of log) subrequests[what] = (subrequests[what] ?? 0) + 1;
    out[kind] = { invocations: entry.invocations, subrequests };
  }
  return out;
}

export class ThreadSequencer extends bundle.ThreadSequencer {
  constructor(state, env) {
    super(state, countedEnv(env));
  }
  fetch(request) {
    return invocation("sequencer " + new URL(request.url).pathname, () => super.fetch(request));
  }
}

export class TenantLimiter extends bundle.TenantLimiter {
  fetch(request) {
    return invocation("limiter " + new URL(request.url).pathname, () => super.fetch(request));
  }
}

export class WebhookDeliverer extends bundle.WebhookDeliverer {
  constructor(state, env) {
    super(state, countedEnv(env));
  }
  fetch(request) {
    return invocation("deliverer " + new URL(request.url).pathname, () => super.fetch(request));
  }
  alarm(...args) {
    return invocation("deliverer alarm", () => super.alarm(...args));
  }
}

export default {
  fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/__subrequests") {
      const id = url.searchParams.get("id");
      return Response.json({ request: id === null ? null : requests.get(id) ?? null, objects: objectsSnapshot() });
    }
    const id = request.headers.get("x-count-id");
    const counted = countedEnv(env);
    if (id === null) return worker.fetch(request, counted, ctx);
    const log = [];
    requests.set(id, log);
    return context.run(log, () => worker.fetch(request, counted, ctx));
  },
};
`;

/** One invocation kind of a Durable Object: how often it ran, and its own subrequests (by what they were). */
export interface ObjectInvocations {
  invocations: number;
  subrequests: Record<string, number>;
}

export interface SubrequestReport {
  /** The request's subrequests, in order (`fetch PUT host/path`, `object SEQUENCER /write`, `r2 get`); null if unknown. */
  request: string[] | null;
  /** Every object invocation so far, by kind. */
  objects: Record<string, ObjectInvocations>;
}

/** The header that names a counted request. */
export const COUNT_HEADER = "x-count-id";

/** What the counting Worker at `base` recorded for request `id` (and for the objects so far). */
export async function subrequestsOf(base: string, id?: string): Promise<SubrequestReport> {
  const response = await fetch(`${base}/__subrequests${id === undefined ? "" : `?id=${encodeURIComponent(id)}`}`);
  if (!response.ok) throw new Error(`subrequest counts: ${response.status}`);
  return (await response.json()) as SubrequestReport;
}

/** A request's subrequests by kind: S3 (by the host given), libSQL, other fetches, each object binding, R2. */
export function classifySubrequests(
  lines: readonly string[],
  hosts: { s3?: string; libsql?: string },
): Record<string, number> {
  const counts: Record<string, number> = {};
  const add = (kind: string) => (counts[kind] = (counts[kind] ?? 0) + 1);
  for (const line of lines) {
    if (line.startsWith("object ")) add(line.split(" ")[1] as string);
    else if (line.startsWith("r2 ")) add("R2");
    else if (hosts.s3 && line.includes(` ${hosts.s3}/`)) add("S3");
    else if (hosts.libsql && line.includes(` ${hosts.libsql}/`)) add("libSQL");
    else add("fetch");
  }
  return counts;
}

/** One operation's subrequests from the Worker's request, by kind (`S3`, `libSQL`, `SEQUENCER`, `TENANT_LIMITER`, ...). */
export interface OperationCost {
  operation: string;
  /**
   * `single`: one thread, a bounded number of calls (these stay within 5); `history`: one
   * thread's history read from the rollout (grows with the thread's uncompacted tail);
   * `many`: several threads.
   */
  scope: "single" | "history" | "many";
  subrequests: Record<string, number>;
  total: number;
  /** What each subrequest was, in order (for a failing assertion's message). */
  lines: string[];
}

export interface CostRun {
  /** The counting Worker (started with `countSubrequests`). */
  base: string;
  token: string;
  /** host:port of the S3 and libSQL endpoints the Worker was given, to tell their requests apart. */
  hosts: { s3?: string; libsql?: string };
  /** Threads of the many-threads stream. */
  manyThreads: number;
  /** A receiver's URL for one webhook (its delivery is counted on the deliverer's side); none: no webhook row. */
  webhookUrl?: string;
  /** Waits until the receiver has acknowledged `n` deliveries. */
  webhookDelivered?: (n: number) => Promise<void>;
  /** The webhook's signing secret, once it is created. */
  webhookCreated?: (secret: string) => void;
}

/**
 * Runs each operation once on the counting Worker and reads back what its request cost:
 * create (a thread's first, and on a thread the sequencer holds), update, strong and
 * cache reads, a single-thread stream from its start (open, catch-up, live link; then
 * closed), a many-threads stream, fork, delete; and, on the deliverer's side, a webhook's
 * delivery of one event. Streams are counted once their events arrived and the stream
 * settled for a second (their safety poll, once a minute, comes on top: see the docs).
 */
export async function measureOperationCosts(
  run: CostRun,
): Promise<{ rows: OperationCost[]; delivery: ObjectRow | null }> {
  const stamp = Date.now().toString(36);
  const auth = { authorization: `Bearer ${run.token}` };
  const rows: OperationCost[] = [];
  let n = 0;
  const counted = async (
    operation: string,
    scope: OperationCost["scope"],
    send: (id: string) => Promise<void>,
    settleMs = 300,
  ) => {
    const id = `${stamp}-${n++}`;
    await send(id);
    // What the request left to waitUntil (a lease given back, a hint) settles first.
    await sleep(settleMs);
    const lines = (await subrequestsOf(run.base, id)).request ?? [];
    const subrequests = classifySubrequests(lines, run.hosts);
    rows.push({ operation, scope, subrequests, total: lines.length, lines });
  };
  const call = async (id: string | null, method: string, path: string, body?: unknown, headers = {}) => {
    const response = await fetch(`${run.base}${path}`, {
      method,
      headers: {
        ...auth,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...(id === null ? {} : { [COUNT_HEADER]: id }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const thread = `costs-${stamp}`;
  const hooked = `${thread}-hooked`;
  // First, before any write: the sequencers read the tenant's subscriptions at most once per 10 s.
  if (run.webhookUrl) {
    const created = await call(null, "POST", "/v1/webhooks", { url: run.webhookUrl, threads: [hooked] });
    run.webhookCreated?.(created.webhook.secret);
  }
  await counted("create (a thread's first)", "single", async (id) => {
    await call(id, "POST", `/v1/threads/${thread}/artifacts`, { artifactType: "note", payload: { i: 0 } });
  });
  let artifactId = "";
  await counted("create", "single", async (id) => {
    artifactId =
      (await call(id, "POST", `/v1/threads/${thread}/artifacts`, { artifactType: "note", payload: { i: 1 } }))
        .artifact.id;
  });
  await counted("update", "single", async (id) => {
    await call(id, "PATCH", `/v1/threads/${thread}/artifacts/${artifactId}`, { payload: { i: 2 } });
  });
  await sleep(200);
  await counted("read (strong)", "single", async (id) => void await call(id, "GET", `/v1/threads/${thread}`));
  await counted("read (consistency=cache)", "single", async (id) => {
    await call(id, "GET", `/v1/threads/${thread}?consistency=cache`);
  });
  await counted("get artifact", "single", async (id) => {
    await call(id, "GET", `/v1/threads/${thread}/artifacts/${artifactId}`);
  });
  await counted(
    "read as of a seq (atSeq)",
    "history",
    async (id) => void await call(id, "GET", `/v1/threads/${thread}?atSeq=2`),
  );
  await counted("artifact versions", "history", async (id) => {
    await call(id, "GET", `/v1/threads/${thread}/artifacts/${artifactId}/versions`);
  });
  await counted("list threads", "many", async (id) => void await call(id, "GET", `/v1/threads?limit=10`));
  // A stream is counted over its whole request: opened, caught up, live for a second, closed
  // (its place under the tenant's cap given back). Its safety poll, once a minute, is not in it.
  await counted("stream, one thread (catch-up of 3, live 1 s, closed)", "single", async (id) => {
    const stream = await SseStream.open(`${run.base}/v1/threads/${thread}/events?since=0`, {
      ...auth,
      [COUNT_HEADER]: id,
    });
    await stream.until((events) => events >= 3);
    await sleep(1000);
    stream.close();
  }, 1500);
  const many = Array.from({ length: run.manyThreads }, (_, i) => `costs-${stamp}-many-${i}`);
  for (const threadId of many) {
    await call(null, "POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "n", payload: {} });
  }
  await counted(`stream, ${run.manyThreads} threads (catch-up of 1 each, live 1 s, closed)`, "many", async (id) => {
    const stream = await SseStream.open(`${run.base}/v1/events?threads=${many.join(",")}`, {
      ...auth,
      [COUNT_HEADER]: id,
    });
    await stream.until((events) => events >= run.manyThreads);
    await sleep(1000);
    stream.close();
  }, 1500);
  await counted("fork", "single", async (id) => {
    await call(id, "POST", `/v1/threads/${thread}/fork`, { threadId: `${thread}-fork` });
  });
  await counted("remove an artifact", "single", async (id) => {
    await call(id, "DELETE", `/v1/threads/${thread}/artifacts/${artifactId}`);
  });
  await counted("delete thread", "single", async (id) => void await call(id, "DELETE", `/v1/threads/${thread}-fork`));
  let delivery: ObjectRow | null = null;
  if (run.webhookUrl && run.webhookDelivered) {
    await call(null, "POST", `/v1/threads/${hooked}/artifacts`, { artifactType: "n", payload: {} });
    await run.webhookDelivered(1);
    const before = (await subrequestsOf(run.base)).objects;
    const deliveries = 5;
    for (let i = 0; i < deliveries; i++) {
      await call(null, "POST", `/v1/threads/${hooked}/artifacts`, { artifactType: "n", payload: { i } });
      await run.webhookDelivered(2 + i);
    }
    await sleep(300);
    const after = (await subrequestsOf(run.base)).objects;
    delivery = objectDelta("deliverer alarm", before, after, deliveries, run.hosts);
  }
  return { rows, delivery };
}

/** An object invocation kind's cost per unit of work (a delivery), between two snapshots. */
export interface ObjectRow {
  kind: string;
  per: number;
  invocationsPer: number;
  subrequestsPer: Record<string, number>;
  totalPer: number;
}

function objectDelta(
  kind: string,
  before: Record<string, ObjectInvocations>,
  after: Record<string, ObjectInvocations>,
  units: number,
  hosts: { s3?: string; libsql?: string },
): ObjectRow {
  const a = after[kind] ?? { invocations: 0, subrequests: {} };
  const b = before[kind] ?? { invocations: 0, subrequests: {} };
  const lines: string[] = [];
  for (const [what, count] of Object.entries(a.subrequests)) {
    for (let i = 0; i < count - (b.subrequests[what] ?? 0); i++) lines.push(what);
  }
  const classified = classifySubrequests(lines, hosts);
  return {
    kind,
    per: units,
    invocationsPer: (a.invocations - b.invocations) / units,
    subrequestsPer: Object.fromEntries(Object.entries(classified).map(([k, v]) => [k, v / units])),
    totalPer: lines.length / units,
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A bare event stream that counts the events it received (whatever their kind). */
class SseStream {
  readonly #controller: AbortController;
  #events = 0;
  #waiters = new Set<() => void>();

  private constructor(controller: AbortController) {
    this.#controller = controller;
  }

  static async open(url: string, headers: Record<string, string>): Promise<SseStream> {
    const controller = new AbortController();
    const stream = new SseStream(controller);
    const response = await fetch(url, {
      headers: { accept: "text/event-stream", ...headers },
      signal: controller.signal,
    });
    if (response.status !== 200 || !response.body) throw new Error(`stream ${url}: ${response.status}`);
    void stream.#read(response.body);
    return stream;
  }

  async #read(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of body) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          if (/^data:/m.test(buffer.slice(0, end))) this.#events++;
          buffer = buffer.slice(end + 2);
        }
        for (const wake of [...this.#waiters]) wake();
      }
    } catch {
      // Closed by us.
    }
  }

  until(done: (events: number) => boolean, timeoutMs = 20_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`stream: ${this.#events} events after ${timeoutMs} ms`)),
        timeoutMs,
      );
      const check = () => {
        if (!done(this.#events)) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      this.#waiters.add(check);
      check();
    });
  }

  close(): void {
    this.#controller.abort();
  }
}
