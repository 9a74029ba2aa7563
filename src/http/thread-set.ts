import type { StreamedThread } from "./sse.ts";
import { isThreadId } from "../model/ids.ts";
import { invalid } from "./problem.ts";

/** The most threads one `GET /v1/events` stream may follow (API.md); `MAX_STREAM_THREADS` may lower it. */
export const MAX_THREADS_PER_STREAM = 100;

const SEQ = /^(0|[1-9][0-9]{0,14})$/;

/**
 * `threads=a,b:12,c`: the threads of a multi-thread stream and where each starts. A
 * thread id may itself contain ":", so an entry is `id:seq` only when what follows its
 * last ":" is a seq; to follow `x:12` from the start, write `x:12:0`. Empty, malformed,
 * repeated or more than `max` (MAX_STREAM_THREADS, at most 100) entries are a 400.
 */
export function parseThreadSet(raw: string | undefined, max = MAX_THREADS_PER_STREAM): StreamedThread[] {
  if (raw === undefined || raw.trim() === "") {
    throw invalid(`query threads: list 1 to ${max} thread ids, comma-separated, each optionally as id:seq`);
  }
  const entries = raw.split(",");
  if (entries.length > max) {
    throw invalid(`query threads: at most ${max} threads per stream (got ${entries.length})`);
  }
  const threads: StreamedThread[] = [];
  const seen = new Set<string>();
  for (const entry of entries) {
    const colon = entry.lastIndexOf(":");
    const seqText = colon > 0 ? entry.slice(colon + 1) : "";
    const [threadId, after] = SEQ.test(seqText) ? [entry.slice(0, colon), Number(seqText)] : [entry, 0];
    if (!isThreadId(threadId)) {
      throw invalid(
        `query threads: ${
          JSON.stringify(entry.slice(0, 140))
        } is not a thread id (1-128 chars of [A-Za-z0-9._:-]), optionally with :seq`,
      );
    }
    if (seen.has(threadId)) throw invalid(`query threads: ${threadId} is listed twice`);
    seen.add(threadId);
    threads.push({ threadId, after });
  }
  return threads;
}
