/**
 * A small React app on `thread-artifacts/react` for test/browser/react.test.ts, bundled
 * by esbuild when the test starts (React's development build, in StrictMode: effects and
 * subscriptions run twice). `?api=<origin>&thread=<id>`: the API (another origin: CORS)
 * and the thread shown. Every field a test looks for has an id or a data- attribute.
 */
import { type FormEvent, StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import { ArtifactsApiError, createArtifactsClient, type JsonValue, type LiveArtifact } from "thread-artifacts/client";
import { useThread } from "thread-artifacts/react";

const params = new URLSearchParams(location.search);
const client = createArtifactsClient({ baseUrl: params.get("api") ?? location.origin });

function describe(error: unknown): string {
  if (error instanceof ArtifactsApiError) return `${error.code}: ${error.detail}`;
  return error instanceof Error ? error.message : String(error);
}

function App() {
  const [threadId, setThreadId] = useState(params.get("thread") ?? "demo");
  return (
    <main>
      <p>
        Thread{" "}
        <input
          id="thread"
          defaultValue={threadId}
          onKeyDown={(e) => {
            if (e.key === "Enter") setThreadId(e.currentTarget.value);
          }}
        />
      </p>
      <Thread threadId={threadId} />
    </main>
  );
}

function Thread({ threadId }: { threadId: string }) {
  const { status, thread, seq, error, writeError, pendingWrites, createArtifact, updateArtifact } = useThread(
    client,
    threadId,
  );
  const [formError, setFormError] = useState("");

  const onCreate = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const data = new FormData(event.currentTarget);
    let payload: JsonValue;
    try {
      payload = JSON.parse(String(data.get("payload"))) as JsonValue;
    } catch {
      return setFormError("payload is not valid JSON");
    }
    setFormError("");
    const identityKey = String(data.get("identityKey") ?? "");
    // Rolled back on a refusal: `writeError` says why.
    createArtifact({ artifactType: String(data.get("artifactType")), payload, ...(identityKey ? { identityKey } : {}) })
      .catch(() => {});
  };

  return (
    <section data-thread={threadId}>
      <p>
        <span id="status" data-state={status}>{status}</span> · seq <span id="seq">{seq}</span> · pending{" "}
        <span id="pending">{pendingWrites}</span>
      </p>
      {error !== undefined && <p id="status-error">{describe(error)}</p>}
      <form id="create" onSubmit={onCreate}>
        <input name="artifactType" defaultValue="note" required />
        <input name="identityKey" placeholder="identityKey (optional)" />
        <textarea name="payload" defaultValue='{"text": "hello"}' />
        <button type="submit">Create artifact</button>
      </form>
      <output id="error" role="alert">{formError || (writeError ? describe(writeError.error) : "")}</output>
      <ol id="artifacts">
        {thread?.artifacts.map((artifact) => (
          <Item
            key={artifact.id}
            artifact={artifact}
            onSave={(payload) => updateArtifact(artifact.id, payload).catch(() => {})}
          />
        ))}
      </ol>
    </section>
  );
}

function Item({ artifact, onSave }: { artifact: LiveArtifact; onSave: (payload: JsonValue) => void }) {
  return (
    <li data-id={artifact.id} data-pending={artifact.pending ? "" : undefined}>
      <strong>{artifact.artifactType}{artifact.identityKey ? ` · ${artifact.identityKey}` : ""}</strong>
      <span className="muted">v{artifact.version}{artifact.pending ? " · pending" : ` · seq ${artifact.seq}`}</span>
      <pre>{JSON.stringify(artifact.payload)}</pre>
      <form
        className="edit"
        onSubmit={(event) => {
          event.preventDefault();
          const text = String(new FormData(event.currentTarget).get("text"));
          onSave({ text });
        }}
      >
        <input name="text" aria-label="new text" />
        <button type="submit">Save</button>
      </form>
    </li>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
