/**
 * The fs store's commit journal: durability shared by every thread's commits instead of
 * paid per commit. The commits that arrive while a flush is in flight make the next
 * flush (fs-commit-batch.ts): each object written to a temp file and linked into place
 * without an fsync of its own (the link keeps put-if-absent atomic across processes),
 * then the created ones' keys and texts appended to this process's journal, and one
 * `fdatasync` of the journal makes all of them durable at once. So a 2xx still means
 * the commit survives a power loss: the journal holds it.
 *
 * - **Recovery** (the store's first call, in every process, before anything is read or
 *   written): every journal in the folder is read; a record whose object is missing, or
 *   holds less than the record's text (a power loss took the unsynced file or its name),
 *   is written again, durably. An object that holds something else was replaced since (a
 *   deleted thread's stub) and stays. A torn last line (the append the power cut) ends a
 *   journal: nothing after it was acknowledged.
 * - **Checkpoints**: every CHECKPOINT_MS the journal is rotated, the objects its records
 *   name and their folders are made durable (in the background, off every answer: the
 *   store flushes the whole file system at once, FsOps.syncFileSystem, and journals only
 *   where it can), and the old journal is removed; one whose checkpoint failed stays
 *   until one succeeds. A journal its process left (a crash) is checkpointed and removed
 *   by the next process that starts, once its owner is gone.
 * - **Bounds**: records older than MAX_RECORD_AGE_MS are never replayed: a live process
 *   checkpoints within seconds, so such a record can only be in a journal left since
 *   before a power loss recovered long ago, and replaying it could bring back a commit
 *   that was deleted since (after its thread's delete retention).
 */
import type { CommitBatchWriter, CommitEntry, CommitOutcome } from "./fs-commit-batch.ts";
import { type FileOps, type FsOps, isCode } from "./fs-ops.ts";

/** How often the journal is rotated and its objects made durable on their own (ms). */
export const CHECKPOINT_MS = 2000;
/** Records older than this are never replayed (see above). */
export const MAX_RECORD_AGE_MS = 24 * 60 * 60 * 1000;

/** What the journal needs from its store. */
export interface JournalHost {
  /** The object's text, or null. */
  read(key: string): Promise<string | null>;
  /** Writes the object durably (its file and its name), replacing what is there. */
  restore(key: string, body: string): Promise<void>;
  /** fsyncs each object named and the folders naming them. */
  makeDurable(keys: readonly string[]): Promise<void>;
  /** fsyncs a folder (the journals' own). */
  syncDir(dir: string): Promise<void>;
  /** Makes the folder and its name durable (the journals' own, before the first journal in it). */
  durableDir(dir: string): Promise<void>;
}

export interface JournalOptions {
  fs: FsOps;
  /** The journals' folder (inside the store's root, never a key). */
  dir: string;
  host: JournalHost;
  /** Puts a flush's objects in place and appends and syncs their records (in process, or on a thread). */
  writer: CommitBatchWriter;
  /** The temp files' folder (inside the store's root, never a key). */
  tempDir: string;
  /** This process's id, in its journals' names (`<pid>-<n>-<random>.log`). */
  pid: number;
  /** Whether the process of a journal is still running (it checkpoints its own). */
  isAlive: (pid: number) => boolean;
  now?: () => number;
  checkpointMs?: number;
  /** Keeps the checkpoint timer from holding the process open. */
  unref?: (timer: ReturnType<typeof setInterval>) => void;
}

interface Queued {
  entry: CommitEntry;
  done: { resolve: (outcome: "created" | "exists") => void; reject: (e: unknown) => void };
}

interface Record {
  k: string;
  b: string;
  t: number;
}

interface OpenJournal {
  name: string;
  handle: FileOps;
  /** The objects its durable records name. */
  keys: string[];
  /** Its last batch's write and sync (a checkpoint waits for it before closing). */
  writes: Promise<void>;
}

export class FsJournal {
  readonly #o: JournalOptions;
  readonly #now: () => number;
  #current: OpenJournal | null = null;
  /** Rotated journals not yet checkpointed (one whose checkpoint failed waits for the next). */
  #unsettled: OpenJournal[] = [];
  #opening: Promise<OpenJournal> | null = null;
  #files = 0;
  /** Commits waiting for the next flush, and what their puts resolve. */
  #queued: Queued[] = [];
  #flushing: Promise<void> | null = null;
  #checkpointing: Promise<void> = Promise.resolve();
  #timer: ReturnType<typeof setInterval> | null = null;

  constructor(options: JournalOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  /** Replays every journal in the folder (see above); removes those whose process is gone. */
  async recover(): Promise<{ replayed: number; restored: number }> {
    let names: string[];
    try {
      names = (await this.#o.fs.readdir(this.#o.dir, { withFileTypes: true }))
        .filter((entry) => entry.isFile() && entry.name.endsWith(".log"))
        .map((entry) => entry.name)
        .sort();
    } catch (error) {
      if (isCode(error, "ENOENT")) return { replayed: 0, restored: 0 };
      throw error;
    }
    let replayed = 0;
    let restored = 0;
    for (const name of names) {
      const path = `${this.#o.dir}/${name}`;
      let text: string;
      try {
        text = await this.#o.fs.readFile(path, "utf8");
      } catch (error) {
        if (isCode(error, "ENOENT")) continue;
        throw error;
      }
      const records = parseRecords(text);
      const keys: string[] = [];
      for (const record of records) {
        if (this.#now() - record.t > MAX_RECORD_AGE_MS) continue;
        replayed++;
        keys.push(record.k);
        const current = await this.#o.host.read(record.k);
        if (current === record.b) continue;
        // Missing, empty or cut short: what the power loss took. Anything else replaced it since.
        if (current === null || record.b.startsWith(current)) {
          await this.#o.host.restore(record.k, record.b);
          restored++;
        }
      }
      const owner = Number(name.split("-")[0]);
      if (owner !== this.#o.pid && this.#o.isAlive(owner)) continue;
      await this.#o.host.makeDurable(keys);
      await this.#o.fs.unlink(path).catch(() => {});
    }
    if (names.length > 0) await this.#o.host.syncDir(this.#o.dir);
    return { replayed, restored };
  }

  /**
   * Puts the object at `target` if nothing is there, and appends its record: "created"
   * once an fdatasync covers it, "exists" if another writer's object was there.
   */
  commit(key: string, target: string, body: string): Promise<"created" | "exists"> {
    const written = new Promise<"created" | "exists">((resolve, reject) =>
      this.#queued.push({ entry: { key, target, body, t: this.#now() }, done: { resolve, reject } })
    );
    this.#flushing ??= this.#flush();
    this.#startTimer();
    return written;
  }

  /** Stops the checkpoint timer and makes what the journal holds durable on its own (a clean shutdown). */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#flushing;
    await this.checkpoint();
    await this.#o.writer.close();
  }

  /**
   * Rotates the journal, then makes what the old one names durable and removes it. A
   * journal whose objects could not be made durable (an I/O error) stays, and the next
   * checkpoint tries it again.
   */
  checkpoint(): Promise<void> {
    const run = this.#checkpointing.then(async () => {
      const old = this.#current;
      if (old) {
        // New appends go to a new journal from here; the batch in flight on the old one finishes first.
        this.#current = null;
        this.#unsettled.push(old);
        await old.writes;
        await old.handle.close().catch(() => {});
      }
      // A copy: a journal set aside meanwhile (a failed flush) waits for the next checkpoint.
      const settling = [...this.#unsettled];
      if (settling.length === 0) return;
      await this.#o.host.makeDurable(settling.flatMap((journal) => journal.keys));
      this.#unsettled = this.#unsettled.filter((journal) => !settling.includes(journal));
      for (const journal of settling) await this.#o.fs.unlink(`${this.#o.dir}/${journal.name}`).catch(() => {});
    });
    this.#checkpointing = run.catch(() => {});
    return run;
  }

  /** Puts every queued object in place, then one append and one fdatasync for all of them; again while more queued. */
  async #flush(): Promise<void> {
    try {
      while (this.#queued.length > 0) {
        const batch = this.#queued;
        this.#queued = [];
        let journal: OpenJournal | undefined;
        try {
          // The journal current when the batch is written (one rotated meanwhile is closing:
          // its descriptor may be another file's by the time a write on it runs).
          do journal = await this.#journal(); while (journal !== this.#current);
          // Named before the write: a checkpoint of this journal fsyncs them whatever the write's outcome.
          for (const queued of batch) journal.keys.push(queued.entry.key);
          const write = this.#o.writer.write(journal.handle, this.#o.tempDir, batch.map((queued) => queued.entry));
          journal.writes = write.then(() => {}, () => {});
          const outcomes: CommitOutcome[] = await write;
          batch.forEach((queued, i) => {
            const outcome = outcomes[i] ?? { failed: new Error("the journal's writer gave no outcome") };
            if (typeof outcome === "string") queued.done.resolve(outcome);
            else queued.done.reject(outcome.failed);
          });
        } catch (error) {
          // Unknown whether they are durable: every write of the batch fails (a 503: the next writer finds out).
          // The journal is set aside like a rotated one: its earlier records were
          // acknowledged, so the next checkpoint makes their objects durable and removes it.
          if (journal && this.#current === journal) {
            this.#current = null;
            this.#unsettled.push(journal);
            await journal.handle.close().catch(() => {});
          }
          for (const entry of batch) entry.done.reject(error);
        }
      }
    } finally {
      this.#flushing = null;
    }
  }

  /** The journal appends go to: opened (and named durably) on first use after a rotation. */
  #journal(): Promise<OpenJournal> {
    if (this.#current) return Promise.resolve(this.#current);
    this.#opening ??= (async () => {
      const name = `${this.#o.pid}-${++this.#files}-${crypto.randomUUID().slice(0, 8)}.log`;
      await this.#o.host.durableDir(this.#o.dir);
      const handle = await this.#o.fs.open(`${this.#o.dir}/${name}`, "a");
      // Its name must survive too, or a power loss takes the journal with the commits.
      await this.#o.host.syncDir(this.#o.dir);
      this.#current = { name, handle, keys: [], writes: Promise.resolve() };
      return this.#current;
    })().finally(() => {
      this.#opening = null;
    });
    return this.#opening;
  }

  #startTimer(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.checkpoint().catch(() => {}), this.#o.checkpointMs ?? CHECKPOINT_MS);
    this.#o.unref?.(this.#timer);
  }
}

/** The records of a journal's text, up to a torn or foreign line. */
function parseRecords(text: string): Record[] {
  const records: Record[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    try {
      const record = JSON.parse(line) as Partial<Record>;
      if (typeof record.k !== "string" || typeof record.b !== "string" || typeof record.t !== "number") break;
      records.push(record as Record);
    } catch {
      break;
    }
  }
  return records;
}
