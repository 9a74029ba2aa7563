/**
 * `thread-artifacts/react` in Node: the hooks' pieces (threadSource, threadsSource) with a
 * fake client, so store sharing, StrictMode's unsubscribe-and-subscribe-again and writes
 * holding a store are checked without a DOM; server rendering with react-dom/server
 * (the constant `connecting` snapshot, no store, no fetch); the server's bundles never
 * reach react; and the browser bundle's size. The behaviour in a browser is
 * test/browser/react.test.ts.
 */
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { createElement } from "react";
import { renderToString } from "react-dom/server";
import { describe, expect, it } from "vitest";
import { createArtifactsClient, type ThreadSnapshot, type ThreadsSnapshot } from "../../src/client/index.ts";
import {
  CONNECTING_SNAPSHOT,
  threadSource,
  threadsSource,
  useThread,
  useThreads,
  type WatchOptions,
} from "../../src/client/react.ts";
import { clientBundleSizes } from "../support/client-size.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** A store that records what was done to it. */
class FakeStore {
  closed = false;
  readonly listeners = new Set<() => void>();
  snapshot: ThreadSnapshot = Object.freeze({ status: "live", thread: null, seq: 3, pendingWrites: 0 });
  /** The writes asked for, each settled by the test. */
  readonly writes: Array<{ op: string; settle: (ok: boolean) => void }> = [];

  constructor(readonly ids: readonly string[], readonly options: WatchOptions | undefined) {}

  getSnapshot = () => this.snapshot;
  subscribe = (listener: () => void) => {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  };
  close = () => {
    this.closed = true;
  };

  #write(op: string): Promise<never> {
    return new Promise((resolve, reject) => {
      this.writes.push({ op, settle: (ok) => (ok ? resolve({} as never) : reject(new Error("refused"))) });
    });
  }
  createArtifact = () => Object.assign(this.#write("create"), { pendingId: "pending:1" });
  updateArtifact = () => this.#write("update");
  mergeArtifact = () => this.#write("merge");
  removeArtifact = () => this.#write("remove");
}

function fakeClient() {
  const opened: FakeStore[] = [];
  const client = {
    watchThread(threadId: string, options?: WatchOptions) {
      const store = new FakeStore([threadId], options);
      opened.push(store);
      return store;
    },
    watchThreads(ids: readonly string[], options?: WatchOptions) {
      const store = new FakeStore(ids, options);
      opened.push(store);
      return { getSnapshot: () => ({}) as ThreadsSnapshot, subscribe: store.subscribe, close: store.close, store };
    },
  };
  return { client, opened };
}

const microtask = () => new Promise<void>((resolve) => queueMicrotask(resolve));

describe("threadSource (useThread's pieces)", () => {
  it("opens nothing until subscribed; until then and on the server the snapshot is the constant `connecting`", () => {
    const { client, opened } = fakeClient();
    const source = threadSource(client, "t1");
    expect(source.getSnapshot()).toBe(CONNECTING_SNAPSHOT);
    expect(source.getServerSnapshot()).toBe(CONNECTING_SNAPSHOT);
    expect(CONNECTING_SNAPSHOT).toEqual({ status: "connecting", thread: null, seq: 0, pendingWrites: 0 });
    expect(opened).toHaveLength(0);
  });

  it("one store per (client, thread, options by value), shared by its subscribers, closed a microtask after the last leaves", async () => {
    const { client, opened } = fakeClient();
    const a = threadSource(client, "t1", { maxBackoffMs: 500 });
    const b = threadSource(client, "t1", { maxBackoffMs: 500 });
    const offA = a.subscribe(() => {});
    const offB = b.subscribe(() => {});
    expect(opened).toHaveLength(1);
    expect(opened[0]?.options).toEqual({ maxBackoffMs: 500 });
    expect(a.getSnapshot()).toBe(opened[0]?.snapshot);
    expect(b.getSnapshot()).toBe(a.getSnapshot());

    // Another thread, other options, another client: other stores.
    const offs = [
      threadSource(client, "t2", { maxBackoffMs: 500 }).subscribe(() => {}),
      threadSource(client, "t1").subscribe(() => {}),
      threadSource(fakeClient().client, "t1", { maxBackoffMs: 500 }).subscribe(() => {}),
    ];
    expect(opened.map((s) => s.ids[0])).toEqual(["t1", "t2", "t1"]);

    offA();
    offA(); // twice: counted once
    await microtask();
    expect(opened[0]?.closed).toBe(false);
    offB();
    expect(opened[0]?.closed).toBe(false);
    await microtask();
    expect(opened[0]?.closed).toBe(true);
    expect(opened[0]?.listeners.size).toBe(0);
    expect(a.getSnapshot()).toBe(CONNECTING_SNAPSHOT);
    for (const off of offs) off();
    await microtask();
    expect(opened.every((s) => s.closed)).toBe(true);

    // Subscribed again later: a new store.
    const off = a.subscribe(() => {});
    expect(opened).toHaveLength(4);
    off();
  });

  it("StrictMode: unsubscribed and subscribed again in one pass, the store is kept", async () => {
    const { client, opened } = fakeClient();
    const source = threadSource(client, "t1");
    const listener = () => {};
    source.subscribe(listener)();
    const off = source.subscribe(listener);
    await microtask();
    await microtask();
    expect(opened).toHaveLength(1);
    expect(opened[0]?.closed).toBe(false);
    expect(opened[0]?.listeners.size).toBe(1);
    off();
    await microtask();
    expect(opened[0]?.closed).toBe(true);
  });

  it("a write holds the store until it settles: from before the subscribe, and past the last unsubscribe", async () => {
    const { client, opened } = fakeClient();
    const source = threadSource(client, "t1");
    const created = source.writes.createArtifact({ artifactType: "note", payload: 1 });
    expect(created.pendingId).toBe("pending:1");
    expect(opened).toHaveLength(1);
    const off = source.subscribe(() => {});
    expect(opened).toHaveLength(1);
    const updated = source.writes.updateArtifact("a1", 2).catch((error: Error) => error.message);
    off();
    await microtask();
    expect(opened[0]?.closed).toBe(false);
    const store = opened[0] as FakeStore;
    expect(store.writes.map((w) => w.op)).toEqual(["create", "update"]);
    store.writes[0]?.settle(true);
    await created;
    await microtask();
    expect(store.closed).toBe(false);
    store.writes[1]?.settle(false);
    expect(await updated).toBe("refused");
    await microtask();
    expect(store.closed).toBe(true);
  });
});

describe("threadsSource (useThreads' pieces)", () => {
  it("ids by value: a new array of the same ids shares the store; the snapshot before it has every thread connecting", async () => {
    const { client, opened } = fakeClient();
    const source = threadsSource(client, ["a", "b"]);
    const before = source.getSnapshot();
    expect(before).toEqual({ status: "connecting", threads: { a: CONNECTING_SNAPSHOT, b: CONNECTING_SNAPSHOT } });
    expect(source.getSnapshot()).toBe(before);
    expect(source.getServerSnapshot()).toBe(before);
    const offs = [source.subscribe(() => {}), threadsSource(client, ["a", "b"]).subscribe(() => {})];
    expect(opened).toHaveLength(1);
    expect(opened[0]?.ids).toEqual(["a", "b"]);
    threadsSource(client, ["b", "a"]).subscribe(() => {})();
    expect(opened).toHaveLength(2);
    for (const off of offs) off();
    await microtask();
    expect(opened.every((s) => s.closed)).toBe(true);
  });
});

describe("server rendering", () => {
  function Page({ client }: { client: ReturnType<typeof createArtifactsClient> }) {
    const { status, thread, seq, createArtifact } = useThread(client, "t1", { maxBackoffMs: 1000 });
    const list = useThreads(client, ["t1", "t2"]);
    return createElement(
      "p",
      null,
      `${status} ${thread === null} ${seq} ${typeof createArtifact} ${list.status} ${Object.keys(list.threads)}`,
    );
  }

  it("renders the `connecting` snapshot with renderToString: no store, no request", () => {
    const requests: string[] = [];
    const client = createArtifactsClient({
      baseUrl: "http://127.0.0.1:9",
      fetch: (input) => {
        requests.push(String(input));
        return Promise.reject(new Error("no network on the server"));
      },
    });
    const html = renderToString(createElement(Page, { client }));
    expect(html).toBe("<p>connecting true 0 function connecting t1,t2</p>");
    expect(requests).toEqual([]);
  });

  it("never opens a store while rendering on the server", () => {
    const { client, opened } = fakeClient();
    const Component = () => {
      const { status } = useThread(client, "t1");
      return createElement("span", null, status, " ", useThreads(client, ["t1"]).threads.t1?.status);
    };
    expect(renderToString(createElement(Component))).toBe("<span>connecting<!-- --> <!-- -->connecting</span>");
    expect(opened).toHaveLength(0);
  });
});

describe("server code never loads react", () => {
  it("the Worker entry (wrangler.toml main), the function entries and the runtimes' entries bundle without react or the hooks", async () => {
    const main = /^main\s*=\s*"([^"]+)"/m.exec(readFileSync(`${ROOT}wrangler.toml`, "utf8"))?.[1];
    expect(main).toBe("functions/app.ts");
    const entries = [
      main as string,
      ...readdirSync(`${ROOT}functions`).filter((f) => f.endsWith(".ts")).map((f) => `functions/${f}`),
      ...["node.ts", "deno.ts", "deno-serve.ts", "workers.ts", "rebuild.ts"].map((f) => `src/runtime/${f}`),
    ];
    const result = await build({
      absWorkingDir: ROOT,
      entryPoints: [...new Set(entries)],
      bundle: true,
      write: false,
      outdir: "out",
      format: "esm",
      platform: "node",
      // Only the project's own files are walked: an import of react anywhere in them
      // shows as an external import of the output.
      packages: "external",
      external: ["cloudflare:*"],
      metafile: true,
      logLevel: "silent",
    });
    const outputs = Object.values(result.metafile.outputs);
    expect(outputs).toHaveLength(new Set(entries).size);
    for (const output of outputs) {
      expect(Object.keys(output.inputs).length).toBeGreaterThan(50);
      expect(Object.keys(output.inputs).filter((path) => /src\/client\/react\.ts|page-app\.ts/.test(path))).toEqual([]);
      expect(output.imports.map((i) => i.path).filter((path) => /^react(-dom)?(\/|$)/.test(path))).toEqual([]);
    }
  });
});

describe("the browser bundle", () => {
  it("the client with its store and the React hooks stays under 10 kB gzipped (npm run size:client)", async () => {
    const sizes = await clientBundleSizes();
    for (const size of sizes) {
      console.log(`${size.name}: ${size.minified} B minified, ${size.gzip} B gzip, ${size.brotli} B brotli`);
    }
    const withHooks = sizes.find((s) => s.name.includes("React"));
    expect(withHooks?.gzip).toBeLessThan(10_000);
  });
});
