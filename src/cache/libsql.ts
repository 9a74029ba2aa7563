import type { InStatement } from "@libsql/client";
import { type Artifact, parseThreadJson, type ThreadJson, type ThreadState } from "../model/artifact.ts";
import type { Commit } from "../model/patch.ts";
import { type LibsqlCacheOptions, LibsqlConnection, type SqlClient, type SqlResult } from "./connection.ts";
import type {
  ArtifactCache,
  CachedContext,
  ChangedThread,
  EventPage,
  EventRead,
  TargetLookup,
  ThreadCursor,
} from "./port.ts";
import {
  applyStatements,
  artifactArgs,
  chunksBy,
  chunksOfCommits,
  forkOf,
  forkText,
  keyLookupStatement,
  keyRecordOf,
  lifeOf,
  lookupStatement,
  parseBody,
  recentKeysOf,
  recentKeysStatement,
  seqFrom,
  seqStatement,
} from "./statements.ts";

export type { LibsqlCacheOptions, SqlClient, SqlResult };

/** Patches applied per batch during catch-up (whole commits: a larger commit is a batch of its own). */
const APPLY_CHUNK = 200;

/**
 * The libSQL cache. Each public method is one `batch` (one round trip, one
 * transaction). Writes are guarded so the cache only ever holds a contiguous
 * prefix of the rollout: a patch applies only where the thread row is at seq - 1.
 */
export class LibsqlCache implements ArtifactCache {
  readonly #db: LibsqlConnection;
  readonly #batcher: ApplyBatcher | null;

  /**
   * `batchApplies`: how to run a flush after the I/O callbacks now due (Node and Deno:
   * `setImmediate`). Then the applies asked for meanwhile (commits of different threads
   * answered in the same turn) go in one batch, one transaction: one BEGIN/COMMIT and one
   * write of the pages they share instead of one each. Absent: each apply is its own batch.
   */
  constructor(options: LibsqlCacheOptions & { batchApplies?: (flush: () => void) => void }) {
    const { batchApplies, ...connection } = options;
    this.#db = new LibsqlConnection({
      callTimeoutMs: 5000,
      retryAfterMs: 1000,
      schema: { ready: false },
      onReset: () => {},
      ...connection,
    });
    this.#batcher = batchApplies ? new ApplyBatcher(this.#db, batchApplies) : null;
  }

  async apply(tenant: string, commits: readonly Commit[]): Promise<number> {
    const batcher = this.#batcher;
    if (batcher && commits.length > 0 && patchCount(commits) <= APPLY_CHUNK) return batcher.add(tenant, commits);
    let seq = -1;
    for (const chunk of chunksOfCommits(commits, APPLY_CHUNK)) {
      const patches = chunk.flatMap((commit) => commit.patches);
      const statements = patches.flatMap((patch) => applyStatements(tenant, patch));
      statements.push(seqStatement(tenant, (chunk[0] as Commit).threadId));
      const results = await this.#db.batch(statements, "write");
      seq = seqFrom(results[results.length - 1] as SqlResult);
      // A chunk that did not land (a gap) means the rest cannot either.
      if (seq < (chunk[chunk.length - 1] as Commit).lastSeq) break;
    }
    return seq;
  }

  async install(tenant: string, state: ThreadState): Promise<number> {
    const token = crypto.randomUUID();
    const key = { t: tenant, th: state.threadId };
    // Only the batch whose INSERT created the row (its token) fills it.
    const mine = `(SELECT installer FROM threads WHERE tenant = :t AND thread_id = :th) = :token`;
    const statements: InStatement[] = [
      {
        sql: `INSERT INTO threads (tenant, thread_id, created_at, updated_at, seq, event_floor, installer, forked_from,
                life_start)
              VALUES (:t, :th, :created, :updated, :seq, :seq, :token, :fork, :lifeStart) ON CONFLICT DO NOTHING`,
        args: {
          ...key,
          created: state.createdAt,
          updated: state.updatedAt,
          seq: state.seq,
          token,
          fork: forkText(state.forkedFrom),
          lifeStart: state.lifeStart ?? 0,
        },
      },
      { sql: `DELETE FROM artifacts WHERE tenant = :t AND thread_id = :th AND ${mine}`, args: { ...key, token } },
      {
        sql: `DELETE FROM idempotency_keys WHERE tenant = :t AND thread_id = :th AND ${mine}`,
        args: { ...key, token },
      },
      ...(state.recentKeys ?? []).map((record) => ({
        sql: `INSERT OR REPLACE INTO idempotency_keys (tenant, key, thread_id, fingerprint, seq, at)
              SELECT :t, :key, :th, :fp, :seq, :at WHERE ${mine}`,
        args: { ...key, token, key: record.key, fp: record.fingerprint, seq: record.seq, at: record.at },
      })),
      ...state.artifacts.map((artifact, index) => ({
        sql:
          `INSERT OR REPLACE INTO artifacts (tenant, thread_id, id, position, artifact_type, identity_key, version, body)
              SELECT :t, :th, :id, :position, :type, :identity, :version, :body WHERE ${mine}`,
        args: { ...key, token, ...artifactArgs(artifact), position: index + 1 },
      })),
      seqStatement(tenant, state.threadId),
    ];
    const results = await this.#db.batch(statements, "write");
    return seqFrom(results[results.length - 1] as SqlResult);
  }

  async seq(tenant: string, threadId: string): Promise<number> {
    const [result] = await this.#db.batch([seqStatement(tenant, threadId)], "read");
    return seqFrom(result as SqlResult);
  }

  /** With the thread's recent Idempotency-Keys (a writer holding the thread decides on them). */
  async readThread(tenant: string, threadId: string): Promise<ThreadState | null> {
    const thread = await this.#readThreadJson(tenant, threadId, true);
    return thread && parseThreadJson(thread);
  }

  readThreadJson(tenant: string, threadId: string): Promise<ThreadJson | null> {
    return this.#readThreadJson(tenant, threadId, false);
  }

  async #readThreadJson(tenant: string, threadId: string, withKeys: boolean): Promise<ThreadJson | null> {
    const args = { t: tenant, th: threadId };
    // One row: SQLite joins the stored bodies, so neither the client nor we touch them
    // one by one. The order comes from the subquery: SQLite never flattens an ordered
    // subquery into an aggregate, so group_concat sees its rows in position order
    // (`group_concat(... ORDER BY position)` says the same but sorts a copy of every
    // body: ~10× slower on a 4,000-artifact thread).
    const [thread, artifacts, keys] = await this.#db.batch(
      [
        {
          sql:
            `SELECT created_at, updated_at, seq, forked_from, life_start FROM threads WHERE tenant = :t AND thread_id = :th`,
          args,
        },
        {
          sql: `SELECT '[' || coalesce(group_concat(body, ','), '') || ']' AS list
                FROM (SELECT body FROM artifacts WHERE tenant = :t AND thread_id = :th ORDER BY position)`,
          args,
        },
        ...(withKeys ? [recentKeysStatement(args)] : []),
      ],
      "read",
    );
    const row = thread?.rows[0];
    if (!row) return null;
    const recentKeys = withKeys ? recentKeysOf(keys) : [];
    return {
      threadId,
      createdAt: String(row.created_at),
      updatedAt: String(row.updated_at),
      seq: Number(row.seq),
      artifactsJson: String(artifacts?.rows[0]?.list ?? "[]"),
      ...forkOf(row),
      ...lifeOf(row),
      ...(recentKeys.length > 0 ? { recentKeys } : {}),
    };
  }

  async writeContext(
    tenant: string,
    threadId: string,
    lookups: readonly TargetLookup[],
    keys: readonly (string | null)[] = [],
  ): Promise<CachedContext> {
    const args = { t: tenant, th: threadId };
    const statements: InStatement[] = [{
      sql: `SELECT seq, life_start, updated_at FROM threads WHERE tenant = :t AND thread_id = :th`,
      args,
    }, {
      sql: `SELECT count(*) AS n FROM artifacts WHERE tenant = :t AND thread_id = :th`,
      args,
    }];
    // Without an identityKey a create never matches an existing artifact, so there is
    // nothing to look up (a lookup by `identity_key IS NULL` would return every such
    // artifact of the thread, on every create). Each distinct lookup is read once.
    const slots = new Map<string, number>();
    const slotOf = lookups.map((lookup) => {
      const statement = lookupStatement(args, lookup);
      if (!statement) return -1;
      const key = JSON.stringify(statement.args);
      let slot = slots.get(key);
      if (slot === undefined) {
        slot = statements.length;
        slots.set(key, slot);
        statements.push(statement);
      }
      return slot;
    });
    const keySlots = keys.map((key) => {
      if (key === null) return -1;
      statements.push(keyLookupStatement(args, key));
      return statements.length - 1;
    });
    const results = await this.#db.batch(statements, "read");
    const thread = results[0]?.rows[0];
    const seq = thread ? Number(thread.seq) : 0;
    return {
      seq,
      updatedAt: thread ? String(thread.updated_at) : null,
      ...(thread && Number(thread.life_start) > 0 && Number(thread.life_start) === seq ? { deleted: true } : {}),
      artifactCount: Number(results[1]?.rows[0]?.n ?? 0),
      targets: slotOf.map((slot) => {
        const row = slot < 0 ? undefined : results[slot]?.rows[0];
        return row ? parseBody(row) : null;
      }),
      ...(keySlots.some((slot) => slot >= 0)
        ? { keys: keySlots.map((slot, i) => slot < 0 ? null : keyRecordOf(results[slot]?.rows[0], keys[i] as string)) }
        : {}),
    };
  }

  async getArtifact(
    tenant: string,
    threadId: string,
    artifactId: string,
  ): Promise<{ seq: number; artifact: Artifact | null }> {
    const [seq, found] = await this.#db.batch(
      [
        seqStatement(tenant, threadId),
        {
          sql: `SELECT body FROM artifacts WHERE tenant = :t AND thread_id = :th AND id = :id`,
          args: { t: tenant, th: threadId, id: artifactId },
        },
      ],
      "read",
    );
    const row = found?.rows[0];
    return { seq: seqFrom(seq as SqlResult), artifact: row ? parseBody(row) : null };
  }

  async listThreads(tenant: string, page: { after: ThreadCursor | null; limit: number }): Promise<ThreadState[]> {
    // A deleted thread (at its tombstone) is listed as if it never existed.
    const after = `AND NOT (life_start > 0 AND seq = life_start)` +
      (page.after ? ` AND (updated_at < :u OR (updated_at = :u AND thread_id < :th))` : "");
    const args = { t: tenant, limit: page.limit, u: page.after?.updatedAt ?? null, th: page.after?.threadId ?? null };
    const pageSql =
      `SELECT thread_id FROM threads WHERE tenant = :t ${after} ORDER BY updated_at DESC, thread_id DESC LIMIT :limit`;
    const [threads, artifacts] = await this.#db.batch(
      [
        {
          sql:
            `SELECT thread_id, created_at, updated_at, seq, forked_from, life_start FROM threads WHERE tenant = :t ${after}
                ORDER BY updated_at DESC, thread_id DESC LIMIT :limit`,
          args,
        },
        {
          sql:
            `SELECT thread_id, body FROM artifacts WHERE tenant = :t AND thread_id IN (${pageSql}) ORDER BY thread_id, position`,
          args,
        },
      ],
      "read",
    );
    const byThread = new Map<string, Artifact[]>();
    for (const row of (artifacts as SqlResult).rows) {
      const id = String(row.thread_id);
      let list = byThread.get(id);
      if (!list) byThread.set(id, list = []);
      list.push(parseBody(row));
    }
    return (threads as SqlResult).rows.map((row) => ({
      threadId: String(row.thread_id),
      createdAt: String(row.created_at),
      updatedAt: String(row.updated_at),
      seq: Number(row.seq),
      artifacts: byThread.get(String(row.thread_id)) ?? [],
      ...forkOf(row),
      ...lifeOf(row),
    }));
  }

  async changedThreads(
    tenant: string,
    page: { since: string; after: ThreadCursor | null; limit: number },
  ): Promise<ChangedThread[]> {
    // The thread rows alone, through threads_by_recency: no artifact is read.
    const after = page.after ? ` AND (updated_at < :u OR (updated_at = :u AND thread_id < :th))` : "";
    const [result] = await this.#db.batch([{
      sql: `SELECT thread_id, seq, updated_at FROM threads WHERE tenant = :t AND updated_at >= :since${after}
            ORDER BY updated_at DESC, thread_id DESC LIMIT :limit`,
      args: {
        t: tenant,
        since: page.since,
        limit: page.limit,
        u: page.after?.updatedAt ?? null,
        th: page.after?.threadId ?? null,
      },
    }], "read");
    return (result as SqlResult).rows.map((row) => ({
      threadId: String(row.thread_id),
      seq: Number(row.seq),
      updatedAt: String(row.updated_at),
    }));
  }

  async events(tenant: string, threadId: string, afterSeq: number, limit: number): Promise<EventPage> {
    const args = { t: tenant, th: threadId, after: afterSeq, limit };
    const [thread, events] = await this.#db.batch(
      [
        { sql: `SELECT seq, event_floor, life_start FROM threads WHERE tenant = :t AND thread_id = :th`, args },
        {
          sql:
            `SELECT seq, data, event FROM events WHERE tenant = :t AND thread_id = :th AND seq > :after ORDER BY seq LIMIT :limit`,
          args,
        },
      ],
      "read",
    );
    const row = thread?.rows[0];
    return {
      seq: row ? Number(row.seq) : 0,
      floor: row ? Number(row.event_floor) : 0,
      lifeStart: row ? Number(row.life_start) : 0,
      events: (events as SqlResult).rows.map((r) =>
        r.event === "thread-deleted"
          ? { seq: Number(r.seq), data: String(r.data), event: "thread-deleted" as const }
          : { seq: Number(r.seq), data: String(r.data) }
      ),
    };
  }

  /**
   * Two statements in one read batch, one round trip, whatever the number of threads:
   * their thread rows, and for each its first `limit` events after its seq (a correlated
   * subquery with LIMIT walks each thread's primary key from `afterSeq`, so a thread far
   * behind costs its page, not its whole tail). The reads travel as one JSON argument, so
   * the SQL text is the same for any number of threads.
   */
  async eventsMany(tenant: string, reads: readonly EventRead[], limit: number): Promise<EventPage[]> {
    if (reads.length === 0) return [];
    const wanted = JSON.stringify(reads.map((r) => ({ id: r.threadId, after: r.afterSeq })));
    const args = { t: tenant, wanted, limit };
    const [threads, events] = await this.#db.batch(
      [
        {
          sql: `SELECT thread_id, seq, event_floor, life_start FROM threads
                WHERE tenant = :t AND thread_id IN (SELECT json_extract(value, '$.id') FROM json_each(:wanted))`,
          args,
        },
        {
          sql: `WITH wanted AS (
                  SELECT key AS i, json_extract(value, '$.id') AS thread_id, json_extract(value, '$.after') AS after
                  FROM json_each(:wanted)
                )
                SELECT w.i, e.seq, e.data, e.event FROM wanted w
                JOIN events e ON e.tenant = :t AND e.thread_id = w.thread_id AND e.seq IN (
                  SELECT seq FROM events WHERE tenant = :t AND thread_id = w.thread_id AND seq > w.after
                  ORDER BY seq LIMIT :limit
                )
                ORDER BY w.i, e.seq`,
          args,
        },
      ],
      "read",
    );
    const rows = new Map<string, { seq: number; floor: number; lifeStart: number }>();
    for (const row of (threads as SqlResult).rows) {
      rows.set(String(row.thread_id), {
        seq: Number(row.seq),
        floor: Number(row.event_floor),
        lifeStart: Number(row.life_start),
      });
    }
    // By the read's index: one thread read twice (from two points) gets two pages.
    const pages: EventPage["events"][] = reads.map(() => []);
    for (const r of (events as SqlResult).rows) {
      pages[Number(r.i)]?.push(
        r.event === "thread-deleted"
          ? { seq: Number(r.seq), data: String(r.data), event: "thread-deleted" as const }
          : { seq: Number(r.seq), data: String(r.data) },
      );
    }
    return reads.map((read, i) => {
      const row = rows.get(read.threadId);
      return { seq: row?.seq ?? 0, floor: row?.floor ?? 0, lifeStart: row?.lifeStart ?? 0, events: pages[i] ?? [] };
    });
  }

  async ping(): Promise<void> {
    await this.#db.batch(["SELECT 1"], "read", { ignoreBreaker: true });
  }

  close(): void {
    this.#db.close();
  }
}

function patchCount(commits: readonly Commit[]): number {
  let count = 0;
  for (const commit of commits) count += commit.patches.length;
  return count;
}

interface PendingApply {
  tenant: string;
  commits: readonly Commit[];
  resolve: (seq: number) => void;
  reject: (error: unknown) => void;
}

/**
 * Applies asked for until the next flush, in batches of about APPLY_CHUNK patches: each
 * item's statements (guarded as always: a commit lands only on top of its predecessor),
 * then every item's thread's seq, so each caller learns where its thread stands after the
 * batch, as from a batch of its own. A batch that fails fails each of its applies.
 */
class ApplyBatcher {
  readonly #db: LibsqlConnection;
  readonly #schedule: (flush: () => void) => void;
  #pending: PendingApply[] = [];
  #scheduled = false;

  constructor(db: LibsqlConnection, schedule: (flush: () => void) => void) {
    this.#db = db;
    this.#schedule = schedule;
  }

  add(tenant: string, commits: readonly Commit[]): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ tenant, commits, resolve, reject });
      if (this.#scheduled) return;
      this.#scheduled = true;
      this.#schedule(() => void this.#flush());
    });
  }

  async #flush(): Promise<void> {
    this.#scheduled = false;
    const items = this.#pending;
    this.#pending = [];
    for (const batch of chunksBy(items, APPLY_CHUNK, (item) => patchCount(item.commits))) await this.#run(batch);
  }

  async #run(batch: PendingApply[]): Promise<void> {
    const statements: InStatement[] = [];
    for (const item of batch) {
      for (const commit of item.commits) {
        for (const patch of commit.patches) statements.push(...applyStatements(item.tenant, patch));
      }
    }
    // Every thread's seq after the whole batch: where the cache stands when the caller hears.
    const seqAt = batch.map((item) =>
      statements.push(seqStatement(item.tenant, (item.commits[0] as Commit).threadId)) - 1
    );
    try {
      const results = await this.#db.batch(statements, "write");
      for (const [index, item] of batch.entries()) item.resolve(seqFrom(results[seqAt[index] as number] as SqlResult));
    } catch (error) {
      for (const item of batch) item.reject(error);
    }
  }
}
