/**
 * The live page's script (page.ts serves the page at `/`): the typed client's stores do
 * the reading, following, reconnecting and optimistic writes (the client's one
 * implementation of "apply events to a thread"); this file only draws their snapshots.
 * A browser module: `npm run build:page` bundles it into page-script.generated.ts (a
 * string, so every runtime serves it without a build step of its own).
 *
 * `?thread=<id>` (default `demo`): one thread, and a form to create an artifact (shown at
 * once, marked `data-pending`, until the server answers; rolled back with its error if
 * refused). `?threads=a,b,c` (or `?threads=*`: the tenant's latest threads): a list of
 * threads over one `/v1/events` connection. `?access_token=` is sent as a bearer token.
 * Everything from the API is put in the DOM as text, never as markup.
 */
import {
  ArtifactsApiError,
  createArtifactsClient,
  type JsonValue,
  type LiveArtifact,
  type StoreStatus,
  type ThreadSnapshot,
} from "../client/index.ts";

const params = new URLSearchParams(location.search);
const token = params.get("access_token");
const client = createArtifactsClient({ baseUrl: location.origin, ...(token ? { token } : {}) });

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

const STATUS_TEXT: Record<StoreStatus, string> = {
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  deleted: "deleted",
  error: "error",
};

function showStatus(status: StoreStatus, error: unknown): void {
  const element = $("status");
  element.dataset.state = status;
  element.textContent = status === "error" && error !== undefined ? `error: ${describe(error)}` : STATUS_TEXT[status];
}

function describe(error: unknown): string {
  if (error instanceof ArtifactsApiError) return `${error.code}: ${error.detail}`;
  return error instanceof Error ? error.message : String(error);
}

/** An artifact's <li>, made once per artifact object: the stores keep an unchanged artifact the same object. */
const items = new WeakMap<LiveArtifact, HTMLLIElement>();

function artifactItem(artifact: LiveArtifact): HTMLLIElement {
  const known = items.get(artifact);
  if (known) return known;
  const li = document.createElement("li");
  li.dataset.id = artifact.id;
  if (artifact.pending) li.dataset.pending = "";
  const head = document.createElement("strong");
  head.textContent = artifact.artifactType + (artifact.identityKey ? ` · ${artifact.identityKey}` : "");
  const meta = document.createElement("span");
  meta.className = "muted";
  meta.textContent = ` v${artifact.version} · ${artifact.pending ? "pending…" : `seq ${artifact.seq}`}`;
  const body = document.createElement("pre");
  body.textContent = JSON.stringify(artifact.payload, null, 2);
  li.append(head, meta, body);
  items.set(artifact, li);
  return li;
}

function artifactsOf(snapshot: ThreadSnapshot): readonly LiveArtifact[] {
  return snapshot.thread?.artifacts ?? [];
}

/** One thread and the create form. */
function showThread(threadId: string): void {
  const input = $<HTMLInputElement>("thread");
  input.value = threadId;
  input.addEventListener("change", () => {
    params.set("thread", input.value);
    location.search = params.toString();
  });
  const store = client.watchThread(threadId);
  let formError = "";
  let shown: ThreadSnapshot | null = null;
  const render = () => {
    const snapshot = store.getSnapshot();
    if (snapshot !== shown) {
      shown = snapshot;
      showStatus(snapshot.status, snapshot.error);
      $("seq").textContent = String(snapshot.seq);
      $("artifacts").replaceChildren(...artifactsOf(snapshot).map(artifactItem));
    }
    $("error").textContent = formError;
  };
  store.subscribe(render);
  render();

  const form = $<HTMLFormElement>("create");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    formError = "";
    let payload: JsonValue;
    try {
      payload = JSON.parse(String(data.get("payload"))) as JsonValue;
    } catch {
      formError = "payload is not valid JSON";
      return render();
    }
    const identityKey = String(data.get("identityKey") ?? "");
    // Shown at once (pending); a refusal rolls it back and lands here.
    store.createArtifact({
      artifactType: String(data.get("artifactType")),
      payload,
      ...(identityKey ? { identityKey } : {}),
    }).catch((error: unknown) => {
      formError = describe(error);
      render();
    });
    render();
  });
}

/** List mode: every thread of the list in its own section, all over one connection. */
async function showThreads(listed: string): Promise<void> {
  $("create").hidden = true;
  $("thread").closest("p")!.hidden = true;
  $("threads").before($("status"));
  let ids = listed.split(",").filter(Boolean);
  if (listed === "*") {
    try {
      ids = (await client.listThreads({ limit: 100 })).threads.map((t) => t.id);
    } catch (error) {
      return showStatus("error", error);
    }
  }
  ids = [...new Set(ids)].slice(0, 100);
  const sections = new Map(ids.map((id) => {
    const section = document.createElement("section");
    section.dataset.thread = id;
    const title = document.createElement("h2");
    const list = document.createElement("ol");
    section.append(title, list);
    $("threads").append(section);
    return [id, { section, title, list }] as const;
  }));
  const store = client.watchThreads(ids);
  let shown: Readonly<Record<string, ThreadSnapshot>> = {};
  const render = () => {
    const snapshot = store.getSnapshot();
    showStatus(snapshot.status, snapshot.error);
    for (const [id, { section, title, list }] of sections) {
      const thread = snapshot.threads[id];
      // A thread's snapshot stays the same object until it changes.
      if (!thread || thread === shown[id]) continue;
      const artifacts = artifactsOf(thread);
      section.dataset.state = thread.status;
      title.textContent = `${id} · ${artifacts.length} artifacts · seq ${thread.seq}`;
      list.replaceChildren(...artifacts.map(artifactItem));
    }
    shown = snapshot.threads;
  };
  store.subscribe(render);
  render();
}

const listed = params.get("threads");
if (listed !== null) void showThreads(listed);
else showThread(params.get("thread") || "demo");
