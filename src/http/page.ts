/**
 * The live page at `/`: a thread's artifacts, kept current through EventSource, and a
 * form to create one; or, with `?threads=a,b,c` (or `?threads=*`: the tenant's latest
 * threads), a list of threads kept current through ONE EventSource on `/v1/events`. No build step: plain HTML and one module script. Everything
 * from the API is put in the DOM as text, never as markup.
 */
export const LIVE_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Thread artifacts</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 52rem; padding: 0 1rem; color: #1d1d1f; }
  h1 { font-size: 1.4rem; margin-bottom: .2rem; }
  .muted { color: #6e6e73; }
  form { display: grid; gap: .5rem; grid-template-columns: 1fr 1fr; margin: 1rem 0; }
  form textarea, form .wide { grid-column: 1 / -1; }
  input, textarea, button { font: inherit; padding: .4rem .5rem; }
  textarea { min-height: 5rem; font-family: ui-monospace, monospace; }
  ol { padding-left: 1.2rem; }
  li { border: 1px solid #d2d2d7; border-radius: 6px; padding: .5rem .75rem; margin: .5rem 0; list-style-position: inside; }
  li pre { margin: .3rem 0 0; white-space: pre-wrap; word-break: break-word; font-size: 13px; }
  #status[data-state="live"] { color: #1a7f37; }
  #status[data-state="error"] { color: #b42318; }
  #threads section { border-top: 1px solid #d2d2d7; margin-top: 1rem; }
  #threads h2 { font-size: 1.05rem; margin: .6rem 0 0; }
</style>
</head>
<body>
<h1>Thread artifacts</h1>
<p class="muted">Thread <input id="thread" size="24" aria-label="thread id"> <span id="status" data-state="connecting">connecting…</span> · seq <span id="seq">0</span></p>
<form id="create">
  <input name="artifactType" placeholder="artifactType (e.g. plan)" required value="note">
  <input name="identityKey" placeholder="identityKey (optional)">
  <textarea name="payload" aria-label="payload JSON">{"text": "hello"}</textarea>
  <button class="wide" type="submit">Create artifact</button>
  <output id="error" class="wide" role="alert"></output>
</form>
<ol id="artifacts"></ol>
<div id="threads"></div>
<script type="module">
const params = new URLSearchParams(location.search);
const threadId = params.get("thread") || "demo";
const token = params.get("access_token");
const auth = token ? { authorization: "Bearer " + token } : {};
const $ = (id) => document.getElementById(id);
const artifacts = new Map();
let seq = 0;
let source;

$("thread").value = threadId;
$("thread").addEventListener("change", (e) => {
  params.set("thread", e.target.value);
  location.search = params.toString();
});

function artifactItems(map) {
  return [...map.values()].map((a) => {
    const li = document.createElement("li");
    li.dataset.id = a.id;
    const head = document.createElement("strong");
    head.textContent = a.artifactType + (a.identityKey ? " · " + a.identityKey : "");
    const meta = document.createElement("span");
    meta.className = "muted";
    meta.textContent = " v" + a.version + " · seq " + a.seq;
    const body = document.createElement("pre");
    body.textContent = JSON.stringify(a.payload, null, 2);
    li.append(head, meta, body);
    return li;
  });
}

function render() {
  $("artifacts").replaceChildren(...artifactItems(artifacts));
  $("seq").textContent = String(seq);
}

function apply(event) {
  if (event.seq <= seq) return;
  if (event.op === "remove") artifacts.delete(event.artifact.id);
  else artifacts.set(event.artifact.id, event.artifact);
  seq = event.seq;
  render();
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

async function start() {
  const base = "/v1/threads/" + encodeURIComponent(threadId);
  const response = await fetch(base, { headers: auth });
  if (response.ok) {
    const { thread } = await response.json();
    for (const a of thread.artifacts) artifacts.set(a.id, a);
    seq = thread.rolloutSeq;
  } else if (response.status !== 404) {
    setStatus("error", "read failed: " + response.status);
  }
  render();
  const query = new URLSearchParams({ since: String(seq) });
  if (token) query.set("access_token", token);
  // EventSource resumes by itself with Last-Event-ID after a drop.
  source = new EventSource(base + "/events?" + query);
  source.addEventListener("open", () => setStatus("live", "live"));
  source.addEventListener("error", () => setStatus("error", "reconnecting…"));
  source.addEventListener("artifact-updated", (e) => apply(JSON.parse(e.data)));
  // The thread was deleted: nothing of it is left; its next life (if any) follows on this source.
  source.addEventListener("thread-deleted", (e) => {
    artifacts.clear();
    seq = JSON.parse(e.data).seq;
    render();
  });
}

$("create").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  $("error").textContent = "";
  let payload;
  try {
    payload = JSON.parse(String(form.get("payload")));
  } catch {
    $("error").textContent = "payload is not valid JSON";
    return;
  }
  const body = { artifactType: String(form.get("artifactType")), payload };
  if (form.get("identityKey")) body.identityKey = String(form.get("identityKey"));
  const response = await fetch("/v1/threads/" + encodeURIComponent(threadId) + "/artifacts", {
    method: "POST",
    headers: { "content-type": "application/json", ...auth },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    $("error").textContent = (problem.code || response.status) + ": " + (problem.detail || "");
  }
});

/** List mode: every thread of the list in its own section, all on one EventSource. */
async function startList(listed) {
  $("create").hidden = true;
  $("thread").closest("p").hidden = true;
  let ids = listed.split(",").filter(Boolean).slice(0, 100);
  if (listed === "*") {
    const response = await fetch("/v1/threads?limit=100", { headers: auth });
    ids = response.ok ? (await response.json()).threads.map((t) => t.id) : [];
  }
  const threads = new Map(ids.map((id) => [id, { seq: 0, artifacts: new Map() }]));
  const sections = new Map();
  for (const id of ids) {
    const section = document.createElement("section");
    section.dataset.thread = id;
    const title = document.createElement("h2");
    const list = document.createElement("ol");
    section.append(title, list);
    sections.set(id, { title, list });
    $("threads").append(section);
  }
  const draw = (id) => {
    const thread = threads.get(id);
    const { title, list } = sections.get(id);
    title.textContent = id + " · " + thread.artifacts.size + " artifacts · seq " + thread.seq;
    list.replaceChildren(...artifactItems(thread.artifacts));
  };
  await Promise.all(ids.map(async (id) => {
    const response = await fetch("/v1/threads/" + encodeURIComponent(id), { headers: auth });
    if (response.ok) {
      const { thread } = await response.json();
      const state = threads.get(id);
      for (const a of thread.artifacts) state.artifacts.set(a.id, a);
      state.seq = thread.rolloutSeq;
    }
    draw(id);
  }));
  // id:seq resumes each thread after what was read; an id ending in ":digits" needs its ":0".
  const entries = ids.map((id) => {
    const since = threads.get(id).seq;
    return since > 0 || /:\\d+$/.test(id) ? id + ":" + since : id;
  });
  const query = new URLSearchParams({ threads: entries.join(",") });
  if (token) query.set("access_token", token);
  source = new EventSource("/v1/events?" + query);
  source.addEventListener("open", () => setStatus("live", "live"));
  source.addEventListener("error", () => setStatus("error", "reconnecting…"));
  source.addEventListener("artifact-updated", (e) => {
    const event = JSON.parse(e.data);
    const thread = threads.get(event.threadId);
    if (!thread || event.seq <= thread.seq) return;
    if (event.op === "remove") thread.artifacts.delete(event.artifact.id);
    else thread.artifacts.set(event.artifact.id, event.artifact);
    thread.seq = event.seq;
    draw(event.threadId);
  });
  source.addEventListener("thread-deleted", (e) => {
    const event = JSON.parse(e.data);
    const thread = threads.get(event.threadId);
    if (!thread || event.seq <= thread.seq) return;
    thread.artifacts.clear();
    thread.seq = event.seq;
    draw(event.threadId);
  });
}

if (params.has("threads")) {
  $("threads").before($("status"));
  startList(params.get("threads"));
} else start();
</script>
</body>
</html>
`;
