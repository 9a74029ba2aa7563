import { PAGE_SCRIPT } from "./page-script.generated.ts";

/**
 * The live page at `/`: a thread's artifacts, kept current by the typed client's store
 * (`watchThread`: read, follow, reconnect, resume), and a form whose creates show at once
 * (marked `data-pending`) until the server answers; or, with `?threads=a,b,c` (or
 * `?threads=*`: the tenant's latest threads), a list of threads kept current over ONE
 * `/v1/events` connection (`watchThreads`). Plain HTML and one inline module script:
 * page-app.ts, bundled by `npm run build:page` into page-script.generated.ts, a string,
 * so every runtime serves it as it is. Everything from the API is put in the DOM as
 * text, never as markup.
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
  #status[data-state="reconnecting"], #status[data-state="deleted"] { color: #b54708; }
  li[data-pending] { border-style: dashed; opacity: .7; }
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
${PAGE_SCRIPT}
</script>
</body>
</html>
`;
