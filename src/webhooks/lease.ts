/**
 * Who delivers a webhook when several processes share one store: a lease per webhook,
 * one small object `leases/webhooks/<tenant>/<id>.json` holding `{holder, token,
 * expiresAt, sweptFrom?}`, over nothing but the BlobStore port (put-if-absent, get,
 * put, delete), so it works on a folder, S3 and R2 alike.
 *
 * - Taken with put-if-absent; kept by its holder, who renews it (a get that must still
 *   show its token, then a put with a later `expiresAt`) every third of its length.
 * - Taken over only once it has expired (or by a replay, see WebhookDispatcher.replay):
 *   delete, then put-if-absent.
 * - Released on shutdown by writing it back expired (what it carries survives; the next
 *   process takes it at once), or removed with its webhook.
 *
 * The race, and why it is safe: two processes that find one expired lease may both take
 * it over (A deletes and creates; B, which read the same expired lease, deletes A's and
 * creates its own). Both then deliver until A's next renewal finds B's token and A stops:
 * for at most a third of a lease, both send the same events from the same cursor, each in
 * order and each only after its own `2xx` of the previous one. That is a duplicate, never
 * a skip: a cursor is only ever written with a seq some receiver acknowledged. The same
 * holds for a holder that stalls past its lease (a long pause) or whose clock runs behind
 * the others' by more than two thirds of a lease: duplicates until its next renewal.
 */
import type { BlobStore } from "../blob/port.ts";

export const LEASE_PREFIX = "leases/webhooks/";

interface LeaseRecord {
  holder: string;
  /** This taking's own id: a holder that took the lease twice tells its takings apart. */
  token: string;
  /** Wall-clock ms. */
  expiresAt: number;
  /**
   * The dispatcher's sweep horizon for the webhook (wall-clock ms, see WebhookDispatcher):
   * every thread with an undelivered event changed at or after it. Carried from holder to holder.
   */
  sweptFrom?: number;
}

export interface LeaseOptions {
  /** This process (in the object, for people reading it). */
  holder: string;
  /** How long a lease lasts without renewal (ms). */
  leaseMs: number;
  now: () => number;
}

/** A lease this process holds. */
export interface HeldLease {
  /** What the previous holder left (undefined for a lease never held before). */
  readonly sweptFrom: number | undefined;
  /** Renews it; false when it is not this process's any more (it must stop delivering). */
  renew(sweptFrom: number | undefined): Promise<boolean>;
  /** Gives it up (written back expired, `sweptFrom` kept), or with `forget` removes it. */
  release(sweptFrom: number | undefined, options?: { forget?: boolean }): Promise<void>;
}

/** Another process holds it: no need to ask again before `until` (wall-clock ms). */
export interface LeaseTaken {
  readonly until: number;
}

export class BlobLeases {
  readonly #store: BlobStore;
  readonly #options: LeaseOptions;

  constructor(store: BlobStore, options: LeaseOptions) {
    this.#store = store;
    this.#options = options;
  }

  get leaseMs(): number {
    return this.#options.leaseMs;
  }

  /**
   * Takes the webhook's lease if it is free or expired; `force` (a replay asked here)
   * takes it over even from a live holder, which stops at its next renewal.
   */
  async acquire(tenant: string, webhookId: string, options: { force?: boolean } = {}): Promise<HeldLease | LeaseTaken> {
    const key = leaseKey(tenant, webhookId);
    const token = crypto.randomUUID();
    const body = (sweptFrom: number | undefined) =>
      JSON.stringify(
        {
          holder: this.#options.holder,
          token,
          expiresAt: this.#options.now() + this.#options.leaseMs,
          ...(sweptFrom === undefined ? {} : { sweptFrom }),
        } satisfies LeaseRecord,
      );
    const current = parseLease(await this.#store.get(key));
    if (current === null) {
      if (await this.#store.putIfAbsent(key, body(undefined)) === "created") return this.#held(key, token, undefined);
      return { until: this.#options.now() + this.#options.leaseMs / 3 };
    }
    // A live lease of this process's own is a leftover (the dispatcher asks only for what it does not hold).
    const live = current.expiresAt > this.#options.now() && current.holder !== this.#options.holder;
    // Asked again a third of a lease later at the latest: a lease handed back is taken up within that.
    if (!options.force && live) {
      return { until: Math.min(current.expiresAt, this.#options.now() + this.#options.leaseMs / 3) };
    }
    // Expired (or forced, or ours): delete, then race for it like anyone else.
    await this.#store.delete(key);
    if (await this.#store.putIfAbsent(key, body(current.sweptFrom)) === "created") {
      return this.#held(key, token, current.sweptFrom);
    }
    return { until: this.#options.now() + this.#options.leaseMs / 3 };
  }

  #held(key: string, token: string, sweptFrom: number | undefined): HeldLease {
    const store = this.#store;
    const { holder, leaseMs, now } = this.#options;
    const mine = async () => parseLease(await store.get(key))?.token === token;
    const write = (expiresAt: number, swept: number | undefined) =>
      store.put(
        key,
        JSON.stringify(
          { holder, token, expiresAt, ...(swept === undefined ? {} : { sweptFrom: swept }) } satisfies LeaseRecord,
        ),
      );
    return {
      sweptFrom,
      async renew(swept) {
        if (!(await mine())) return false;
        await write(now() + leaseMs, swept);
        return true;
      },
      async release(swept, options = {}) {
        if (!(await mine())) return;
        if (options.forget) await store.delete(key);
        else await write(0, swept);
      },
    };
  }
}

export function isHeld(lease: HeldLease | LeaseTaken): lease is HeldLease {
  return "renew" in lease;
}

export function leaseKey(tenant: string, webhookId: string): string {
  return `${LEASE_PREFIX}${tenant}/${webhookId}.json`;
}

function parseLease(text: string | null): LeaseRecord | null {
  if (text === null) return null;
  try {
    const value = JSON.parse(text) as Partial<LeaseRecord> | null;
    if (typeof value?.token === "string" && typeof value.expiresAt === "number") return value as LeaseRecord;
  } catch {
    // below
  }
  // A torn or foreign object counts as expired: it is taken over.
  return { holder: "", token: "", expiresAt: 0 };
}
