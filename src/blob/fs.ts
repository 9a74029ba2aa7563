import { randomUUID } from "node:crypto";
import { dirname, join } from "node:path";
import { type CommitBatchWriter, inProcessCommitWriter, lazyCommitWriter, PUT_ATTEMPTS } from "./fs-commit-batch.ts";
import { FsJournal } from "./fs-journal.ts";
import { type FileOps, type FsOps, isCode, nodeFsOps } from "./fs-ops.ts";
import {
  assertValidKey,
  type BlobStore,
  compareKeys,
  DEFAULT_LIST_LIMIT,
  type ListOptions,
  type PutIfAbsentResult,
} from "./port.ts";

/** Temp files live beside the keyspace on the same filesystem, so `link`/`rename` stay atomic. */
const TEMP_DIR = ".tmp";
/** The commit journals (see fs-journal.ts), beside the keyspace too. */
const JOURNAL_DIR = ".journal";
const RESERVED = [TEMP_DIR, JOURNAL_DIR];

export interface FsBlobStoreOptions {
  /**
   * Keys whose put-if-absent is made durable through the process's journal (one shared
   * fdatasync) instead of fsyncs of their own: the rollout's commit keys. Absent: none.
   */
  journaled?: (key: string) => boolean;
  /** This process's id and whether another one still runs (journals are named by process). */
  pid?: number;
  isAlive?: (pid: number) => boolean;
  unref?: (timer: ReturnType<typeof setInterval>) => void;
  /**
   * Runs the journal's flushes (fs-commit-batch.ts): made at the first one. Absent: in
   * this thread, through `fs`.
   */
  commitWriter?: () => CommitBatchWriter;
}

/**
 * A folder of files, one per key. Writes go to a temp file that is fsynced, then
 * linked (put-if-absent: `link` fails with EEXIST if the name exists, atomically,
 * across processes) or renamed (put) into place, and the folder is fsynced: a
 * reader never sees a half-written object and an acknowledged object survives a crash.
 * Journaled keys (see FsBlobStoreOptions) skip the fsyncs of their own: the journal's
 * shared one stands for them, and the first call replays what a power loss took.
 */
export class FsBlobStore implements BlobStore {
  /** Gets are local: see BlobStore.localReads. */
  readonly localReads = true;
  readonly #root: string;
  readonly #fs: FsOps;
  readonly #knownDirs = new Set<string>();
  /** Folders whose name in their parent this process made durable (see #nameDurably). */
  readonly #namedDirs = new Set<string>();

  readonly #journaled: ((key: string) => boolean) | null;
  /**
   * Whether commits go through the journal: only where the file system can be flushed at
   * once (FsOps.syncFileSystem), decided at the first call. A checkpoint that fsyncs
   * object by object must fsync their folders too, and a folder's fsync makes durable
   * the names of commits other writers linked there since, whose data may not be: after
   * a power loss such a name holds an empty file, a commit never acknowledged that
   * blocks its seq for good (test/integration/power-loss.test.ts found it). A flush of
   * the whole file system makes data and names durable together.
   */
  #journaling = false;
  readonly #journal: FsJournal | null;
  #recovered: Promise<void> | null = null;

  /** `fs`: the file system calls (the real ones; a simulated disk in the power-loss tests). */
  constructor(root: string, fs: FsOps = nodeFsOps, options: FsBlobStoreOptions = {}) {
    this.#root = root;
    this.#fs = fs;
    this.#journaled = options.journaled ?? null;
    this.#journal = options.journaled
      ? new FsJournal({
        fs,
        dir: join(root, JOURNAL_DIR),
        pid: options.pid ?? 0,
        isAlive: options.isAlive ?? (() => true),
        ...(options.unref ? { unref: options.unref } : {}),
        writer: lazyCommitWriter(options.commitWriter ?? (() => inProcessCommitWriter(fs))),
        tempDir: join(root, TEMP_DIR),
        host: {
          read: (key) => this.#read(key),
          restore: (key, body) => this.#put(key, body),
          makeDurable: (keys) => this.#makeDurable(keys),
          syncDir: (dir) => this.#syncDir(dir),
          durableDir: (dir) => this.#ensureDir(dir),
        },
      })
      : null;
  }

  /** Journaled stores: stops the checkpoints and makes what the journal holds durable on its own. */
  async close(): Promise<void> {
    await this.#journal?.close();
  }

  /**
   * Journaled stores: rotates the journal and makes what it held durable on its own now
   * (the timer does it every CHECKPOINT_MS); others: nothing to do.
   */
  async checkpoint(): Promise<void> {
    await this.#journal?.checkpoint();
  }

  /** Journaled stores: every call waits for the replay of the journals (once per process). */
  #ready(): Promise<void> {
    const journal = this.#journal;
    if (!journal) return Promise.resolve();
    this.#recovered ??= (async () => {
      await this.#ensureDir(this.#root);
      this.#journaling = await this.#fs.syncFileSystem(this.#root);
      await journal.recover();
    })().catch((error: unknown) => {
      this.#recovered = null;
      throw error;
    });
    return this.#recovered;
  }

  async get(key: string): Promise<string | null> {
    await this.#ready();
    return this.#read(key);
  }

  async #read(key: string): Promise<string | null> {
    try {
      return await this.#fs.readFile(this.#path(key), "utf8");
    } catch (error) {
      if (isCode(error, "ENOENT") || isCode(error, "EISDIR") || isCode(error, "ENOTDIR")) return null;
      throw error;
    }
  }

  async putIfAbsent(key: string, body: string): Promise<PutIfAbsentResult> {
    await this.#ready();
    const target = this.#path(key);
    if (this.#journaling && this.#journal !== null && (this.#journaled?.(key) ?? false)) {
      return this.#journal.commit(key, target, body);
    }
    const temp = await this.#writeTemp(body);
    try {
      await this.#intoPlace(target, () => this.#fs.link(temp, target));
    } catch (error) {
      if (isCode(error, "EEXIST")) return "exists";
      throw error;
    } finally {
      await this.#fs.unlink(temp).catch(() => {});
    }
    await this.#syncDir(dirname(target));
    return "created";
  }

  async put(key: string, body: string): Promise<void> {
    await this.#ready();
    await this.#put(key, body);
  }

  async #put(key: string, body: string): Promise<void> {
    const target = this.#path(key);
    const temp = await this.#writeTemp(body);
    try {
      await this.#intoPlace(target, () => this.#fs.rename(temp, target));
    } catch (error) {
      await this.#fs.unlink(temp).catch(() => {});
      throw error;
    }
    await this.#syncDir(dirname(target));
  }

  async exists(key: string): Promise<boolean> {
    await this.#ready();
    try {
      return (await this.#fs.stat(this.#path(key))).isFile();
    } catch (error) {
      if (isCode(error, "ENOENT") || isCode(error, "ENOTDIR")) return false;
      throw error;
    }
  }

  /**
   * Unlinks the file and fsyncs its folder (a deletion survives a crash too), then
   * removes the folder if that left it empty (a writer that meets the folder gone makes
   * it again: see #intoPlace).
   */
  async delete(key: string): Promise<void> {
    await this.#ready();
    const target = this.#path(key);
    try {
      await this.#fs.unlink(target);
    } catch (error) {
      if (isCode(error, "ENOENT") || isCode(error, "ENOTDIR")) return;
      throw error;
    }
    const dir = dirname(target);
    await this.#syncDir(dir);
    await this.#fs.rmdir(dir).then(() => {
      this.#knownDirs.delete(dir);
      this.#namedDirs.delete(dir);
    }, () => {});
  }

  async list(prefix: string, options: ListOptions = {}): Promise<string[]> {
    await this.#ready();
    const limit = options.limit ?? DEFAULT_LIST_LIMIT;
    const startAfter = options.startAfter ?? "";
    // Walk only the deepest folder the prefix names; the rest of the prefix filters names.
    const slash = prefix.lastIndexOf("/");
    const dirKey = slash >= 0 ? prefix.slice(0, slash) : "";
    if (dirKey !== "") assertValidKey(dirKey);
    if (RESERVED.some((name) => dirKey === name || dirKey.startsWith(`${name}/`))) return [];
    const keys: string[] = [];
    if (limit > 0) await this.#walk(dirKey, prefix, startAfter, limit, keys);
    return keys;
  }

  /**
   * Appends the keys under `dirKey` that match, in ascending key order, until `limit`:
   * entries are visited in the order of their keys (a folder's keys all start with
   * "<name>/", so it sorts as "<name>/"), and folders whose keys all sort at or before
   * `startAfter` are skipped unread, so paging through a big tree, or jumping over a
   * folder with `startAfter`, reads only what it returns.
   */
  async #walk(dirKey: string, prefix: string, startAfter: string, limit: number, out: string[]): Promise<void> {
    let entries;
    try {
      entries = await this.#fs.readdir(dirKey === "" ? this.#root : join(this.#root, dirKey), { withFileTypes: true });
    } catch (error) {
      if (isCode(error, "ENOENT") || isCode(error, "ENOTDIR")) return;
      throw error;
    }
    // Entries that cannot hold a key to return are dropped before sorting: paging through
    // a folder of 10,000 commits sorts only what lies after `startAfter`.
    const visits: { key: string; order: string; dir: boolean }[] = [];
    for (const entry of entries) {
      if (dirKey === "" && RESERVED.includes(entry.name)) continue;
      const key = dirKey === "" ? entry.name : `${dirKey}/${entry.name}`;
      if (entry.isDirectory()) {
        const below = `${key}/`;
        // Descend only where keys below could still match the prefix...
        if (!(below.startsWith(prefix) || prefix.startsWith(below))) continue;
        // ...and could still sort after startAfter (those below a folder that sorts before
        // it, without startAfter being inside the folder, all sort before it).
        if (below <= startAfter && !startAfter.startsWith(below)) continue;
        visits.push({ key, order: below, dir: true });
      } else if (entry.isFile() && key.startsWith(prefix) && key > startAfter) {
        visits.push({ key, order: key, dir: false });
      }
    }
    visits.sort((a, b) => compareKeys(a.order, b.order));
    for (const visit of visits) {
      if (out.length >= limit) return;
      if (visit.dir) await this.#walk(visit.key, prefix, startAfter, limit, out);
      else out.push(visit.key);
    }
  }

  #path(key: string): string {
    assertValidKey(key);
    if (RESERVED.some((name) => key === name || key.startsWith(`${name}/`))) {
      throw new Error(`reserved blob key: ${key}`);
    }
    return join(this.#root, key);
  }

  /** A temp file holding `body`, fsynced (journaled commits are written by the journal: fs-commit-batch.ts). */
  async #writeTemp(body: string): Promise<string> {
    const tempDir = join(this.#root, TEMP_DIR);
    await this.#ensureDir(tempDir, false);
    const temp = join(tempDir, randomUUID());
    let handle: FileOps | undefined;
    try {
      handle = await this.#fs.open(temp, "wx").catch(async (error: unknown) => {
        if (!isCode(error, "ENOENT")) throw error;
        this.#knownDirs.clear();
        await this.#ensureDir(tempDir, false);
        return this.#fs.open(temp, "wx");
      });
      await handle.writeFile(body, "utf8");
      await handle.sync();
    } catch (error) {
      await handle?.close().catch(() => {});
      handle = undefined;
      await this.#fs.unlink(temp).catch(() => {});
      throw error;
    } finally {
      await handle?.close();
    }
    return temp;
  }

  /**
   * Runs `move` after making the target's folder; again if the folder vanished meanwhile
   * (a delete in another process or call removes a folder it emptied), a few times: each
   * round is a race lost to a delete of the last object there, which ends.
   */
  async #intoPlace(target: string, move: () => Promise<void>): Promise<void> {
    const dir = dirname(target);
    for (let attempt = 1;; attempt++) {
      try {
        await this.#ensureDir(dir);
        await move();
        return;
      } catch (error) {
        if (!isCode(error, "ENOENT") || attempt >= PUT_ATTEMPTS) throw error;
        this.#knownDirs.clear();
        this.#namedDirs.clear();
      }
    }
  }

  /** Makes the folder (once per process); `durable`: its name too (a journaled commit's waits for a checkpoint). */
  async #ensureDir(dir: string, durable = true): Promise<void> {
    if (!this.#knownDirs.has(dir)) {
      const made = await this.#fs.mkdir(dir, { recursive: true });
      // The root made now (a new DATA_DIR): its name, and the names above it this call made, too.
      if (typeof made === "string" && (this.#root === made || this.#root.startsWith(`${made}/`))) {
        await this.#nameDurably(this.#root, made);
      }
      this.#knownDirs.add(dir);
    }
    if (durable && !this.#namedDirs.has(dir)) await this.#nameDurably(dir, this.#root);
  }

  /**
   * A folder's name in its parent is durable only once the parent was fsynced (POSIX):
   * without it, a new thread's `commits/` folder, and every commit acknowledged in it,
   * could vanish in a power loss (test/integration/power-loss.test.ts). So the parent of
   * each folder on the way from the root is fsynced once per process (it may have been
   * made by a process that died before syncing it), all at once; up to the root, or above
   * it where this call made the root too.
   */
  async #nameDurably(dir: string, top: string): Promise<void> {
    const named = this.#unnamedUpTo(dir, top);
    if (named.length === 0) return;
    await Promise.all([...new Set(named.map((d) => dirname(d)))].map((parent) => this.#syncDir(parent)));
    for (const d of named) this.#namedDirs.add(d);
  }

  /** `dir` and the folders above it up to `top`, until one whose name is known durable. */
  #unnamedUpTo(dir: string, top: string): string[] {
    const unnamed: string[] = [];
    for (let d = dir; (d === top || d.startsWith(`${top}/`)) && !this.#namedDirs.has(d); d = dirname(d)) {
      unnamed.push(d);
    }
    return unnamed;
  }

  /**
   * Makes the objects a journal names durable on their own, with their folders' names: a
   * flush of the file system where this store journals (a checkpoint); else (a journal
   * left by an earlier process, replayed by one that cannot flush at once) each object
   * fsynced, then the folders naming them.
   */
  async #makeDurable(keys: readonly string[]): Promise<void> {
    const paths = [...new Set(keys)].map((key) => this.#path(key));
    if (this.#journaling) {
      // Never object by object here (see #journaling): a failed flush keeps the journal.
      if (!(await this.#fs.syncFileSystem(this.#root))) throw new Error("the file system could not be synced");
      // Every object and folder name that existed when the flush began is durable: these,
      // their folders and the folders above them.
      for (const path of paths) {
        for (const d of this.#unnamedUpTo(dirname(path), this.#root)) this.#namedDirs.add(d);
      }
      return;
    }
    // (One removed since is skipped: whatever stands there now was made durable by its own writer.)
    await inBatches(paths, SYNC_BATCH, (path) => this.#sync(path));
    const dirs = [...new Set(paths.map((path) => dirname(path)))];
    await inBatches(dirs, SYNC_BATCH, async (dir) => {
      await this.#syncDir(dir);
      await this.#nameDurably(dir, this.#root);
    });
  }

  /**
   * Makes a folder's entries durable. A folder that is gone already was emptied and removed
   * by a concurrent delete (the entry this call made, or removed, went with it): nothing to sync.
   */
  #syncDir(dir: string): Promise<void> {
    return this.#sync(dir);
  }

  /** fsyncs a file or a folder; one that is gone is skipped. */
  async #sync(path: string): Promise<void> {
    const handle = await this.#fs.open(path, "r").catch((error: unknown) => {
      if (isCode(error, "ENOENT")) return null;
      throw error;
    });
    if (!handle) return;
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}

/** fsyncs a checkpoint runs at once. */
const SYNC_BATCH = 32;

async function inBatches<T>(items: readonly T[], size: number, work: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(work));
}
