import {
  type Context,
  endSpan,
  type Link,
  spanContextOf,
  SpanKind,
  startChildSpan,
  withSpan,
} from "../model/tracing.ts";

/**
 * Runs a write group's commit as one `commit` span under the first write's request (the
 * trace context each write came in; the group's other writes are linked), its store calls
 * inside it. Without a tracer, just `run`.
 */
export async function inCommitSpan<T>(contexts: readonly Context[], run: () => Promise<T>): Promise<T> {
  const first = contexts[0];
  const span = first &&
    startChildSpan("commit", SpanKind.INTERNAL, { "artifacts.commit.writes": contexts.length }, first);
  if (!span) return run();
  if (contexts.length > 1) span.addLinks(linksOf(contexts.slice(1)));
  try {
    const result = await withSpan(span, run, first);
    endSpan(span);
    return result;
  } catch (error) {
    endSpan(span, error);
    throw error;
  }
}

/** The trace contexts of the writes after the first, as links. */
function linksOf(contexts: readonly Context[]): Link[] {
  const links: Link[] = [];
  for (const context of contexts) {
    const spanContext = spanContextOf(context);
    if (spanContext) links.push({ context: spanContext });
  }
  return links;
}
