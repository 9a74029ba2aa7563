/**
 * The cache schema. Everything here can be rebuilt from the rollout, so it is
 * created idempotently on first use and never migrated destructively.
 *
 * - threads: one row per thread; `seq` is the last patch applied (the cache holds
 *   exactly the rollout prefix 1..seq); events with seq <= `event_floor` are not in
 *   the event log (the thread was installed from a snapshot) and are read from the
 *   rollout instead; `installer` marks the row a snapshot install created; `forked_from`
 *   is a fork's origin; `life_start` the seq of its latest delete (the thread is deleted
 *   while `seq = life_start`; its artifacts and earlier events are gone).
 * - artifacts: the materialized latest list; `body` is the artifact's JSON, served as is;
 *   `position` orders creation.
 * - events: the durable event log the live stream reads, one row per patch.
 *
 * `threads` rows are small, so it is WITHOUT ROWID (the key is the row). `artifacts` and
 * `events` are rowid tables: their rows carry ~1 KiB+ of JSON, which overflows the
 * ~1 KiB a WITHOUT ROWID (index b-tree) cell holds in a 4 KiB page and would cost an
 * overflow page per row to write and to read; a rowid table's cell holds ~4 KiB.
 * (A cache made before this layout keeps its WITHOUT ROWID tables: same queries, slower.)
 */
export const SCHEMA: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS threads (
    tenant TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_floor INTEGER NOT NULL DEFAULT 0,
    installer TEXT,
    forked_from TEXT,
    life_start INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, thread_id)
  ) WITHOUT ROWID`,
  `CREATE INDEX IF NOT EXISTS threads_by_recency ON threads (tenant, updated_at DESC, thread_id DESC)`,
  `CREATE TABLE IF NOT EXISTS artifacts (
    tenant TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    id TEXT NOT NULL,
    position INTEGER NOT NULL,
    artifact_type TEXT NOT NULL,
    identity_key TEXT,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, thread_id, id)
  )`,
  `CREATE INDEX IF NOT EXISTS artifacts_by_position ON artifacts (tenant, thread_id, position)`,
  // Only artifacts with an identityKey are ever looked up by it, so only they are indexed:
  // a plain create writes one index page fewer. (Replaces a full index of earlier caches.)
  `DROP INDEX IF EXISTS artifacts_by_identity`,
  `CREATE INDEX IF NOT EXISTS artifacts_by_identity_key ON artifacts (tenant, thread_id, artifact_type, identity_key) WHERE identity_key IS NOT NULL`,
  `CREATE TABLE IF NOT EXISTS events (
    tenant TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    event TEXT,
    PRIMARY KEY (tenant, thread_id, seq)
  )`,
];

/** Columns added to a table after caches with its first layout existed: added on first use when missing. */
export const ADDED_COLUMNS: ReadonlyArray<{ table: string; column: string; sql: string }> = [
  // A fork's origin (JSON {threadId, seq}), on the fork's thread row.
  { table: "threads", column: "forked_from", sql: "ALTER TABLE threads ADD COLUMN forked_from TEXT" },
  // The seq of the thread's latest delete (its life starts there); the thread is deleted while seq = life_start.
  {
    table: "threads",
    column: "life_start",
    sql: "ALTER TABLE threads ADD COLUMN life_start INTEGER NOT NULL DEFAULT 0",
  },
  // An event's SSE name when it is not artifact-updated (thread-deleted).
  { table: "events", column: "event", sql: "ALTER TABLE events ADD COLUMN event TEXT" },
];
