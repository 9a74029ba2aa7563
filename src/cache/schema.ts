/**
 * The cache schema, versioned. Everything here can be rebuilt from the rollout, so a
 * cache of another version is not migrated: it is replaced (dropped and created anew)
 * and rebuilt from the rollout (the Node server starts `rebuild` in the background;
 * elsewhere threads are repaired as they are read or written, and `npm run rebuild`
 * fills the thread list at once).
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
 * - idempotency_keys: the `Idempotency-Key`s the current lives' patches recorded (the
 *   commits hold them; this indexes them), pruned after KEY_RETENTION_MS.
 *
 * `threads` rows are small, so it is WITHOUT ROWID (the key is the row). `artifacts` and
 * `events` are rowid tables: their rows carry ~1 KiB+ of JSON, which overflows the
 * ~1 KiB a WITHOUT ROWID (index b-tree) cell holds in a 4 KiB page and would cost an
 * overflow page per row to write and to read; a rowid table's cell holds ~4 KiB.
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
  // a plain create writes one index page fewer.
  `CREATE INDEX IF NOT EXISTS artifacts_by_identity_key ON artifacts (tenant, thread_id, artifact_type, identity_key) WHERE identity_key IS NOT NULL`,
  `CREATE TABLE IF NOT EXISTS events (
    tenant TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    event TEXT,
    PRIMARY KEY (tenant, thread_id, seq)
  )`,
  // A key is looked up by tenant (a key reused on another thread is refused too), and
  // pruned and listed by thread.
  `CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (tenant, key, thread_id)
  ) WITHOUT ROWID`,
  `CREATE INDEX IF NOT EXISTS idempotency_keys_by_thread ON idempotency_keys (tenant, thread_id, seq)`,
];

/** Bump on any change to SCHEMA: a cache of another version is replaced, then rebuilt. */
export const SCHEMA_VERSION = 3;

/** The tables the schema owns (a replaced cache loses them all; their indexes go with them). */
const TABLES = ["threads", "artifacts", "events", "idempotency_keys"];

/** The slice of a client `migrate` needs. */
interface Migratable {
  batch(statements: string[], mode: "read" | "write"): Promise<Array<{ rows: Record<string, unknown>[] }>>;
  execute(statement: string): Promise<unknown>;
}

/**
 * Puts the schema in place on a freshly opened client: the file PRAGMAs on a local file,
 * then, unless the cache is at SCHEMA_VERSION already (one read), the tables, replacing
 * those of any other version (an earlier build's, or tables with no version at all).
 * Two processes migrating one database at once may both replace it: the cache is
 * rebuildable, so that costs repairs, never data. Resolves `reset: true` when tables of
 * another version were dropped.
 */
export async function migrate(
  client: Migratable,
  options: { local: boolean; deadline: <T>(call: Promise<T>) => Promise<T> },
): Promise<{ reset: boolean }> {
  const { deadline } = options;
  if (options.local) {
    // The cache is rebuildable, so WAL with synchronous=NORMAL: the one fsync per
    // write is the rollout's. The WAL is checkpointed (two fsyncs, on the committing
    // call) every 10,000 pages instead of SQLite's 1,000: a create dirties ~8 pages, so
    // that is once per ~1,200 creates rather than ~125 (+15-20% creates/s over 64
    // threads, for a WAL file of up to ~40 MB). All three are connection settings; the
    // client holds a single connection so they hold for every call.
    await deadline(client.execute("PRAGMA journal_mode = WAL"));
    await deadline(client.execute("PRAGMA synchronous = NORMAL"));
    await deadline(client.execute("PRAGMA wal_autocheckpoint = 10000"));
  }
  const [, version, tables] = await deadline(client.batch([
    `CREATE TABLE IF NOT EXISTS cache_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
    `SELECT value FROM cache_meta WHERE key = 'schema_version'`,
    `SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name IN (${
      TABLES.map((t) => `'${t}'`).join(", ")
    })`,
  ], "write"));
  if (String(version?.rows[0]?.value ?? "") === String(SCHEMA_VERSION)) return { reset: false };
  const reset = Number(tables?.rows[0]?.n ?? 0) > 0;
  await deadline(client.batch([
    ...TABLES.map((table) => `DROP TABLE IF EXISTS ${table}`),
    ...SCHEMA,
    `INSERT INTO cache_meta (key, value) VALUES ('schema_version', '${SCHEMA_VERSION}')
       ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
  ], "write"));
  return { reset };
}
