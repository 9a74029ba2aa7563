/**
 * How an every-thread webhook finds threads with events past its cursors that no hint
 * announced (another process's writes, what a restart left undelivered): the tenant's
 * threads changed since a time, newest first.
 */
import type { ChangedThread, ThreadCursor } from "../cache/port.ts";

export type { ChangedThread };

/** The tenant's threads changed at or after `sinceMs` (wall clock), newest first. */
export type ChangedThreads = (tenant: string, sinceMs: number) => AsyncIterable<ChangedThread>;

/**
 * `ChangedThreads` over the cache's thread rows (ids, heads and times only, through the
 * recency index; deleted threads included, so a delete another process made reaches the
 * webhook as its `thread-deleted` event), `pageSize` threads a page. Limits: it needs the
 * cache (down, every-thread sweeps wait); `updatedAt` is the writer's clock, and a commit
 * the cache takes late (a libSQL outage) is listed with its old time.
 */
export function changedThreadsOf(
  service: {
    changedThreads(
      tenant: string,
      page: { since: string; after: ThreadCursor | null; limit: number },
    ): Promise<ChangedThread[]>;
  },
  pageSize = 200,
): ChangedThreads {
  return async function* changedThreads(tenant, sinceMs) {
    const since = new Date(Number.isFinite(sinceMs) ? Math.max(0, sinceMs) : 0).toISOString();
    let after: ThreadCursor | null = null;
    for (;;) {
      const page = await service.changedThreads(tenant, { since, after, limit: pageSize });
      yield* page;
      const last = page[page.length - 1];
      if (page.length < pageSize || !last) return;
      after = { updatedAt: last.updatedAt, threadId: last.threadId };
    }
  };
}
