/**
 * `Idempotency-Key` for the writes that are not a thread's (the webhook routes): their
 * effects are registry objects, not commits, so the key gets an object of its own in the
 * rollout store, `tenants/<tenant>/idempotency/<sha-256 of the key>.json`:
 *
 * 1. claimed with put-if-absent (`pending`, the request's fingerprint, a token the write
 *    may use, e.g. the id a create gives its webhook);
 * 2. the write runs;
 * 3. its answer (status, body, headers) overwrites the claim (`done`).
 *
 * A repeat reads the object: `done` and the same fingerprint answers what the first
 * answer said; another fingerprint is 422; `pending` is 409 `idempotency_key_in_flight`
 * (retry shortly), or, once older than STALE_CLAIM_MS (the first process died between 1
 * and 3), the repeat takes the claim over and runs the write again, with the same token.
 * That is safe for every webhook write: a create runs again with the id it chose the
 * first time (finding its webhook made, it answers it), an update, a delete and a replay
 * are idempotent in effect, and a rotation's lost secret is simply rotated again. A write
 * that fails gives its claim back (a refusal is not remembered). Answers are kept
 * KEY_RETENTION_MS; an older object counts as absent (a bucket lifecycle rule on
 * `tenants/<tenant>/idempotency/` may delete them).
 */
import type { BlobStore } from "../blob/port.ts";
import { sha256Hex } from "../model/digest.ts";
import { ProblemError } from "../model/errors.ts";
import { type IdempotencyMark, KEY_RETENTION_MS } from "../model/idempotency.ts";
import { tenantPrefix } from "../rollout/keys.ts";

/** A claim older than this is taken to be of a process that died mid-write. */
export const STALE_CLAIM_MS = 30_000;

/** What a keyed write answered, kept for its repeats. */
export interface KeptAnswer {
  status: number;
  /** The JSON body, or null for none (204). */
  body: unknown;
  headers: Record<string, string>;
}

type Stored =
  | { v: 1; state: "pending"; fingerprint: string; token: string; at: number }
  | { v: 1; state: "done"; fingerprint: string; token: string; at: number; answer: KeptAnswer };

export class KeyedAnswers {
  readonly #store: BlobStore;
  readonly #now: () => number;

  constructor(store: BlobStore, now: () => number = Date.now) {
    this.#store = store;
    this.#now = now;
  }

  /**
   * Runs `write` once for the tenant's key (see above) and answers what it answered;
   * `token` is the one given the first time the key was claimed.
   */
  async once(
    tenant: string,
    mark: IdempotencyMark,
    newToken: () => string,
    write: (token: string) => Promise<KeptAnswer>,
  ): Promise<KeptAnswer> {
    const key = await answerKey(tenant, mark.key);
    const claim: Stored = { v: 1, state: "pending", fingerprint: mark.fingerprint, token: newToken(), at: this.#now() };
    let token = claim.token;
    if ((await this.#store.putIfAbsent(key, JSON.stringify(claim))) === "exists") {
      const found = await this.#read(key);
      if (found && this.#now() - found.at <= KEY_RETENTION_MS) {
        if (found.fingerprint !== mark.fingerprint) {
          throw new ProblemError(
            "idempotency_key_reused",
            "this Idempotency-Key was used for another request (another route or body)",
          );
        }
        if (found.state === "done") return found.answer;
        if (this.#now() - found.at < STALE_CLAIM_MS) {
          throw new ProblemError("idempotency_key_in_flight", "a request with this Idempotency-Key is in flight", {
            retryAfterSeconds: 1,
          });
        }
        token = found.token;
      }
      // Expired, unreadable, or a claim its process left: take it.
      await this.#store.put(key, JSON.stringify({ ...claim, token }));
    }
    let answer: KeptAnswer;
    try {
      answer = await write(token);
    } catch (error) {
      await this.#store.delete(key).catch(() => {});
      throw error;
    }
    const done: Stored = { v: 1, state: "done", fingerprint: mark.fingerprint, token, at: this.#now(), answer };
    await this.#store.put(key, JSON.stringify(done));
    return answer;
  }

  async #read(key: string): Promise<Stored | null> {
    const text = await this.#store.get(key);
    if (text === null) return null;
    try {
      const stored = JSON.parse(text) as Stored;
      return stored.v === 1 && typeof stored.fingerprint === "string" && typeof stored.at === "number" ? stored : null;
    } catch {
      return null;
    }
  }
}

/** The key's object: its SHA-256 in hex (any printable key, one safe segment). */
async function answerKey(tenant: string, key: string): Promise<string> {
  return `${tenantPrefix(tenant)}idempotency/${await sha256Hex(key)}.json`;
}
