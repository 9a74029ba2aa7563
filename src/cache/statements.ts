import type { InStatement } from "@libsql/client";
import type { Artifact, ForkRef } from "../model/artifact.ts";
import { type IdempotencyRecord, KEY_RETENTION_MS, MAX_KEYS_PER_THREAD } from "../model/idempotency.ts";
import { type Commit, eventData, type Patch } from "../model/patch.ts";
import type { TargetLookup } from "./port.ts";
import type { SqlResult } from "./connection.ts";

/*
 * The statements the cache's batches are made of, and how their rows read back: the
 * SQL of the cache (cache/libsql.ts puts them together, one batch per call).
 */

/** Whole commits in batches of about `size` patches. */
export function chunksOfCommits(commits: readonly Commit[], size: number): Commit[][] {
  return chunksBy(commits, size, (commit) => commit.patches.length);
}

/**
 * `items` in order, in chunks whose `weight` sums to at most `size` (an item heavier than
 * `size` is a chunk of its own).
 */
export function chunksBy<T>(items: readonly T[], size: number, weight: (item: T) => number): T[][] {
  const chunks: T[][] = [];
  let current: T[] = [];
  let total = 0;
  for (const item of items) {
    const w = weight(item);
    if (current.length > 0 && total + w > size) {
      chunks.push(current);
      current = [];
      total = 0;
    }
    current.push(item);
    total += w;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/** A fork's origin as the threads row stores it (JSON), or null. */
export function forkText(fork: ForkRef | undefined): string | null {
  return fork ? JSON.stringify({ threadId: fork.threadId, seq: fork.seq }) : null;
}

/** `deleted` and `lifeStart` of a threads row (a thread never deleted has neither). */
export function lifeOf(row: Record<string, unknown>): { deleted?: true; lifeStart?: number } {
  const lifeStart = Number(row.life_start ?? 0);
  if (!(lifeStart > 0)) return {};
  return Number(row.seq) === lifeStart ? { deleted: true, lifeStart } : { lifeStart };
}

export function forkOf(row: Record<string, unknown>): { forkedFrom?: ForkRef } {
  const text = row.forked_from;
  if (typeof text !== "string") return {};
  const fork = JSON.parse(text) as ForkRef;
  return { forkedFrom: { threadId: fork.threadId, seq: fork.seq } };
}

export function applyStatements(tenant: string, patch: Patch): InStatement[] {
  const key = { t: tenant, th: patch.threadId, seq: patch.seq };
  const guard = `(SELECT seq FROM threads WHERE tenant = :t AND thread_id = :th) = :seq`;
  if (patch.op === "delete") {
    // The end of a life: the row stays as the tombstone (seq = life_start), nothing else of
    // the thread. It applies on top of any earlier seq, or of no row at all: a cache that
    // missed the end of a life (the life's commits are stubs by then) goes straight to it.
    return [
      {
        sql:
          `INSERT INTO threads (tenant, thread_id, created_at, updated_at, seq, life_start) VALUES (:t, :th, :at, :at, :seq, :seq)
              ON CONFLICT (tenant, thread_id) DO UPDATE SET seq = :seq, updated_at = :at, installer = NULL, life_start = :seq,
                forked_from = NULL
              WHERE threads.seq < :seq`,
        args: { ...key, at: patch.at },
      },
      { sql: `DELETE FROM artifacts WHERE tenant = :t AND thread_id = :th AND ${guard}`, args: key },
      { sql: `DELETE FROM events WHERE tenant = :t AND thread_id = :th AND seq < :seq AND ${guard}`, args: key },
      {
        sql: `INSERT OR IGNORE INTO events (tenant, thread_id, seq, data, event)
              SELECT :t, :th, :seq, :data, 'thread-deleted' WHERE ${guard}`,
        args: { ...key, data: eventData(patch) },
      },
      // The life's keys end with it (the delete's own is recorded below).
      {
        sql: `DELETE FROM idempotency_keys WHERE tenant = :t AND thread_id = :th AND seq < :seq AND ${guard}`,
        args: key,
      },
      ...keyStatements(tenant, patch, guard),
    ];
  }
  const fork = forkText(patch.fork);
  const statements: InStatement[] = [
    {
      // The first patch after a tombstone starts a new life: its createdAt, and a fork's origin.
      sql: `UPDATE threads SET seq = :seq, updated_at = :at, installer = NULL,
              created_at = CASE WHEN life_start > 0 AND seq = life_start THEN :at ELSE created_at END,
              forked_from = coalesce(:fork, forked_from)
            WHERE tenant = :t AND thread_id = :th AND seq = :seq - 1`,
      args: { ...key, at: patch.at, fork },
    },
  ];
  if (patch.seq === 1) {
    statements.push({
      sql:
        `INSERT INTO threads (tenant, thread_id, created_at, updated_at, seq, forked_from) VALUES (:t, :th, :at, :at, 1, :fork) ON CONFLICT DO NOTHING`,
      args: { t: tenant, th: patch.threadId, at: patch.at, fork },
    });
  }
  // Every statement below is guarded by the thread row now being at this seq, and is
  // idempotent, so re-applying the head patch changes nothing and a gap applies nothing.
  if (patch.op === "remove") {
    statements.push({
      sql: `DELETE FROM artifacts WHERE tenant = :t AND thread_id = :th AND id = :id AND ${guard}`,
      args: { ...key, id: patch.artifact.id },
    });
  } else {
    statements.push({
      sql: `INSERT INTO artifacts (tenant, thread_id, id, position, artifact_type, identity_key, version, body)
            SELECT :t, :th, :id, :seq, :type, :identity, :version, :body WHERE ${guard}
            ON CONFLICT (tenant, thread_id, id) DO UPDATE SET version = excluded.version, body = excluded.body`,
      args: { ...key, ...artifactArgs(patch.artifact) },
    });
  }
  statements.push({
    sql: `INSERT OR IGNORE INTO events (tenant, thread_id, seq, data) SELECT :t, :th, :seq, :data WHERE ${guard}`,
    args: { ...key, data: eventData(patch) },
  });
  statements.push(...keyStatements(tenant, patch, guard));
  return statements;
}

/** Every this many seqs, a thread's keys older than KEY_RETENTION_MS are dropped (the apply that reaches it). */
const PRUNE_KEYS_EVERY = 256;

/** The patch's Idempotency-Key into the index (guarded like the rest of its apply), and a prune now and then. */
function keyStatements(tenant: string, patch: Patch, guard: string): InStatement[] {
  const statements: InStatement[] = [];
  const mark = patch.idempotency;
  const args = { t: tenant, th: patch.threadId, seq: patch.seq };
  if (mark) {
    statements.push({
      sql: `INSERT INTO idempotency_keys (tenant, key, thread_id, fingerprint, seq, at)
            SELECT :t, :key, :th, :fp, :seq, :at WHERE ${guard}
            ON CONFLICT (tenant, key, thread_id) DO UPDATE SET fingerprint = excluded.fingerprint, seq = excluded.seq,
              at = excluded.at`,
      args: { ...args, key: mark.key, fp: mark.fingerprint, at: patch.at },
    });
  }
  if (patch.seq % PRUNE_KEYS_EVERY === 0) {
    statements.push({
      sql: `DELETE FROM idempotency_keys WHERE tenant = :t AND thread_id = :th AND at < :cutoff`,
      args: { t: tenant, th: patch.threadId, cutoff: new Date(Date.parse(patch.at) - KEY_RETENTION_MS).toISOString() },
    });
  }
  return statements;
}

/**
 * Each key's record: the thread's own first; else another thread's of the tenant (its
 * fingerprint, which names its path, never matches: a key reused elsewhere is refused).
 */
export function keyLookupStatement(args: { t: string; th: string }, key: string): InStatement {
  return {
    sql: `SELECT fingerprint, seq, at, thread_id = :th AS here FROM idempotency_keys WHERE tenant = :t AND key = :key
          ORDER BY here DESC LIMIT 1`,
    args: { ...args, key },
  };
}

export function keyRecordOf(row: Record<string, unknown> | undefined, key: string): IdempotencyRecord | null {
  if (!row) return null;
  return {
    key,
    fingerprint: Number(row.here) === 1 ? String(row.fingerprint) : `elsewhere:${String(row.fingerprint)}`,
    seq: Number(row.seq),
    at: String(row.at),
  };
}

/** A thread's recent keys, oldest first (the newest MAX_KEYS_PER_THREAD). */
export function recentKeysStatement(args: { t: string; th: string }): InStatement {
  return {
    sql: `SELECT key, fingerprint, seq, at FROM (SELECT key, fingerprint, seq, at FROM idempotency_keys
            WHERE tenant = :t AND thread_id = :th ORDER BY seq DESC LIMIT ${MAX_KEYS_PER_THREAD}) ORDER BY seq`,
    args,
  };
}

export function recentKeysOf(result: SqlResult | undefined): IdempotencyRecord[] {
  return (result?.rows ?? []).map((row) => ({
    key: String(row.key),
    fingerprint: String(row.fingerprint),
    seq: Number(row.seq),
    at: String(row.at),
  }));
}

export function lookupStatement(
  args: { t: string; th: string },
  lookup: TargetLookup,
): { sql: string; args: Record<string, string> } | null {
  if (lookup.by === "id") {
    return {
      sql: `SELECT body FROM artifacts WHERE tenant = :t AND thread_id = :th AND id = :id`,
      args: { ...args, id: lookup.artifactId },
    };
  }
  if (lookup.identityKey === null) return null;
  return {
    sql:
      `SELECT body FROM artifacts WHERE tenant = :t AND thread_id = :th AND artifact_type = :type AND identity_key = :identity`,
    args: { ...args, type: lookup.artifactType, identity: lookup.identityKey },
  };
}

export function artifactArgs(artifact: Artifact) {
  return {
    id: artifact.id,
    type: artifact.artifactType,
    identity: artifact.identityKey,
    version: artifact.version,
    body: JSON.stringify(artifact),
  };
}

export function seqStatement(tenant: string, threadId: string): InStatement {
  return { sql: `SELECT seq FROM threads WHERE tenant = :t AND thread_id = :th`, args: { t: tenant, th: threadId } };
}

export function seqFrom(result: SqlResult): number {
  const row = result.rows[0];
  return row ? Number(row.seq) : 0;
}

export function parseBody(row: Record<string, unknown>): Artifact {
  return JSON.parse(String(row.body)) as Artifact;
}
