/**
 * How an every-thread webhook finds threads with events past its cursors that no hint
 * announced (another process's writes, what a restart left undelivered): the tenant's
 * threads changed since a time, newest first.
 */

/** A thread changed at `updatedAt`, its head then `seq`. */
export interface ChangedThread {
  threadId: string;
  seq: number;
  updatedAt: string;
}

/** The tenant's threads changed at or after `sinceMs` (wall clock), newest first. */
export type ChangedThreads = (tenant: string, sinceMs: number) => AsyncIterable<ChangedThread>;

/** A position in the service's thread list (`updatedAt` desc, `threadId` desc). */
interface ListCursor {
  updatedAt: string;
  threadId: string;
}

/**
 * `ChangedThreads` over the service's thread list (the cache's, newest `updatedAt` first),
 * `pageSize` threads a page. Its limits: it needs the cache (down, every-thread sweeps
 * wait); it does not list a thread at its tombstone (another process's delete of a thread
 * the dispatcher has no lane for is not found); `updatedAt` is the writer's clock, and a
 * commit the cache takes late (a libSQL outage) is listed with its old time; a page carries
 * the threads' artifacts, which this does not need.
 */
export function changedThreadsOf(
  service: {
    listThreads(
      tenant: string,
      page: { after: ListCursor | null; limit: number },
    ): Promise<{ threads: ChangedThread[]; next: ListCursor | null }>;
  },
  pageSize = 50,
): ChangedThreads {
  return async function* changedThreads(tenant, sinceMs) {
    let after: ListCursor | null = null;
    for (;;) {
      const page = await service.listThreads(tenant, { after, limit: pageSize });
      for (const { threadId, seq, updatedAt } of page.threads) {
        if (Date.parse(updatedAt) < sinceMs) return;
        yield { threadId, seq, updatedAt };
      }
      if (!page.next) return;
      after = page.next;
    }
  };
}
