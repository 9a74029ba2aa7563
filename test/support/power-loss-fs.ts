/**
 * A simulated disk for power-loss tests: FsOps (src/blob/fs-ops.ts) over an in-memory
 * tree of inodes that keeps what was made durable apart from what was only written, as
 * POSIX promises it and no more:
 *
 * - a file's data is durable once the file was fsynced (`handle.sync()`), as of then;
 * - a folder's entries (names → inodes: creations, links, renames, unlinks, mkdirs) are
 *   durable once the folder was fsynced, as of then;
 * - everything is, as of then, once the file system was synced (`syncFileSystem`);
 * - nothing else is: a file linked into a synced folder but never synced itself comes
 *   back empty (delayed allocation), a folder made but not named in a synced parent is
 *   gone with everything in it.
 *
 * `powerLossAt(n)`: the n-th call from now loses power: it and every later call reject
 * with PowerLost, and the disk keeps only its durable state; `reboot()` then serves that
 * state. Calls are counted across every FsOps taken from the disk.
 */
import type { DirEntry, FileOps, FsOps } from "../../src/blob/fs-ops.ts";

export class PowerLost extends Error {
  constructor() {
    super("power lost");
    this.name = "PowerLost";
  }
}

type Ino = number;

interface State {
  dirs: Map<Ino, Map<string, Ino>>;
  files: Map<Ino, string>;
}

const ROOT: Ino = 1;

function clone(state: State): State {
  return {
    dirs: new Map([...state.dirs].map(([ino, entries]) => [ino, new Map(entries)])),
    files: new Map(state.files),
  };
}

function fsError(code: string, path: string): Error {
  return Object.assign(new Error(`${code}: ${path}`), { code });
}

export class PowerLossDisk {
  /** Whether `syncFileSystem` works (syncfs(2) on Linux) or answers false (elsewhere). */
  readonly #fileSystemSync: boolean;
  #next = ROOT + 1;
  /** What reads see: everything written. */
  #live: State = { dirs: new Map([[ROOT, new Map()]]), files: new Map() };
  /** What survives a power loss. */
  #durable: State = { dirs: new Map([[ROOT, new Map()]]), files: new Map() };
  #calls = 0;
  #lossAt: number | null = null;
  #off = false;
  constructor(options: { fileSystemSync?: boolean } = {}) {
    this.#fileSystemSync = options.fileSystemSync ?? true;
  }

  /** Calls made so far (to pick loss points within a workload's length). */
  get calls(): number {
    return this.#calls;
  }
  get off(): boolean {
    return this.#off;
  }

  /** The call `n` calls from now (1: the next) loses power. */
  powerLossAt(n: number): void {
    this.#lossAt = this.#calls + n;
  }

  /** The power goes now (between two calls). */
  powerLossNow(): void {
    this.#off = true;
  }

  /** Power back: the disk holds what was durable when it went off. */
  reboot(): void {
    this.#live = clone(this.#durable);
    this.#off = false;
    this.#lossAt = null;
  }

  /** Every path in the live tree (for assertions), files with their text. */
  files(): Map<string, string> {
    const out = new Map<string, string>();
    const walk = (ino: Ino, prefix: string) => {
      for (const [name, child] of this.#live.dirs.get(ino) ?? []) {
        const path = `${prefix}/${name}`;
        if (this.#live.dirs.has(child)) walk(child, path);
        else out.set(path, this.#live.files.get(child) ?? "");
      }
    };
    walk(ROOT, "");
    return out;
  }

  ops(): FsOps {
    const call = async <T>(work: () => T): Promise<T> => {
      // A real call returns later: let other work interleave, as the thread pool does.
      await Promise.resolve();
      this.#tick();
      return work();
    };
    return {
      readFile: (path) =>
        call(() => {
          const ino = this.#lookup(path);
          if (ino === undefined) throw fsError("ENOENT", path);
          if (this.#live.dirs.has(ino)) throw fsError("EISDIR", path);
          return this.#live.files.get(ino) ?? "";
        }),
      open: (path, flags) =>
        call((): FileOps => {
          if (flags === "r") {
            const ino = this.#lookup(path);
            if (ino === undefined) throw fsError("ENOENT", path);
            return this.#handle(ino, path);
          }
          const { dir, name } = this.#parent(path);
          const existing = this.#live.dirs.get(dir)?.get(name);
          if (existing !== undefined && flags === "a" && !this.#live.dirs.has(existing)) {
            return this.#handle(existing, path);
          }
          if (existing !== undefined) throw fsError("EEXIST", path);
          const ino = this.#next++;
          this.#live.files.set(ino, "");
          this.#live.dirs.get(dir)?.set(name, ino);
          return this.#handle(ino, path);
        }),
      link: (existing, path) => call(() => this.#link(existing, path)),
      rename: (from, to) =>
        call(() => {
          const source = this.#parent(from);
          const ino = this.#live.dirs.get(source.dir)?.get(source.name);
          if (ino === undefined) throw fsError("ENOENT", from);
          const target = this.#parent(to);
          this.#live.dirs.get(source.dir)?.delete(source.name);
          this.#live.dirs.get(target.dir)?.set(target.name, ino);
        }),
      unlink: (path) => call(() => this.#unlink(path)),
      mkdir: (path) =>
        call(() => {
          let ino = ROOT;
          let made: string | undefined;
          let sofar = "";
          for (const name of segments(path)) {
            sofar += `/${name}`;
            const entries = this.#live.dirs.get(ino);
            if (!entries) throw fsError("ENOTDIR", sofar);
            let child = entries.get(name);
            if (child === undefined) {
              child = this.#next++;
              this.#live.dirs.set(child, new Map());
              entries.set(name, child);
              made ??= sofar;
            } else if (!this.#live.dirs.has(child)) throw fsError("EEXIST", sofar);
            ino = child;
          }
          return made;
        }),
      readdir: (path) =>
        call((): DirEntry[] => {
          const ino = this.#lookup(path);
          if (ino === undefined) throw fsError("ENOENT", path);
          const entries = this.#live.dirs.get(ino);
          if (!entries) throw fsError("ENOTDIR", path);
          return [...entries].map(([name, child]) => {
            const dir = this.#live.dirs.has(child);
            return { name, isFile: () => !dir, isDirectory: () => dir };
          });
        }),
      rmdir: (path) =>
        call(() => {
          const { dir, name } = this.#parent(path);
          const ino = this.#live.dirs.get(dir)?.get(name);
          if (ino === undefined) throw fsError("ENOENT", path);
          if ((this.#live.dirs.get(ino)?.size ?? 0) > 0) throw fsError("ENOTEMPTY", path);
          this.#live.dirs.get(dir)?.delete(name);
        }),
      stat: (path) =>
        call(() => {
          const ino = this.#lookup(path);
          if (ino === undefined) throw fsError("ENOENT", path);
          const dir = this.#live.dirs.has(ino);
          return { isFile: () => !dir };
        }),
      // syncfs(2): everything written so far is durable.
      syncFileSystem: () =>
        call(() => {
          if (!this.#fileSystemSync) return false;
          this.#durable = clone(this.#live);
          return true;
        }),
      // The same calls made synchronously: each a call that may be the one losing power.
      sync: {
        writeNew: (path, data) => {
          this.#tick();
          const { dir, name } = this.#parent(path);
          const entries = this.#live.dirs.get(dir) as Map<string, Ino>;
          if (entries.has(name)) throw fsError("EEXIST", path);
          const ino = this.#next++;
          this.#live.files.set(ino, "");
          entries.set(name, ino);
          this.#tick();
          this.#live.files.set(ino, data);
          this.#tick(); // close
        },
        link: (existing, path) => {
          this.#tick();
          this.#link(existing, path);
        },
        unlink: (path) => {
          this.#tick();
          this.#unlink(path);
        },
      },
    };
  }

  #link(existing: string, path: string): void {
    const ino = this.#lookup(existing);
    if (ino === undefined) throw fsError("ENOENT", existing);
    const { dir, name } = this.#parent(path);
    const entries = this.#live.dirs.get(dir) as Map<string, Ino>;
    if (entries.has(name)) throw fsError("EEXIST", path);
    entries.set(name, ino);
  }

  #unlink(path: string): void {
    const { dir, name } = this.#parent(path);
    const ino = this.#live.dirs.get(dir)?.get(name);
    if (ino === undefined) throw fsError("ENOENT", path);
    if (this.#live.dirs.has(ino)) throw fsError("EISDIR", path);
    this.#live.dirs.get(dir)?.delete(name);
  }

  #tick(): void {
    if (this.#off) throw new PowerLost();
    this.#calls++;
    if (this.#lossAt !== null && this.#calls >= this.#lossAt) {
      this.#off = true;
      throw new PowerLost();
    }
  }

  #handle(ino: Ino, path: string): FileOps {
    const call = async <T>(work: () => T): Promise<T> => {
      await Promise.resolve();
      this.#tick();
      return work();
    };
    return {
      writeFile: (data) =>
        call(() => {
          if (this.#live.dirs.has(ino)) throw fsError("EISDIR", path);
          this.#live.files.set(ino, data);
        }),
      appendSync: (data) => {
        this.#tick();
        if (this.#live.dirs.has(ino)) throw fsError("EISDIR", path);
        this.#live.files.set(ino, (this.#live.files.get(ino) ?? "") + data);
      },
      datasync: () => call(() => void this.#durable.files.set(ino, this.#live.files.get(ino) ?? "")),
      sync: () =>
        call(() => {
          const entries = this.#live.dirs.get(ino);
          if (entries) this.#durable.dirs.set(ino, new Map(entries));
          else this.#durable.files.set(ino, this.#live.files.get(ino) ?? "");
          // Inodes a synced folder names exist after a loss (empty until synced themselves).
          for (const child of entries?.values() ?? []) {
            if (this.#live.dirs.has(child)) {
              if (!this.#durable.dirs.has(child)) this.#durable.dirs.set(child, new Map());
            } else if (!this.#durable.files.has(child)) this.#durable.files.set(child, "");
          }
        }),
      close: () => call(() => {}),
    };
  }

  #lookup(path: string): Ino | undefined {
    let ino: Ino = ROOT;
    for (const name of segments(path)) {
      const next = this.#live.dirs.get(ino)?.get(name);
      if (next === undefined) return undefined;
      ino = next;
    }
    return ino;
  }

  #parent(path: string): { dir: Ino; name: string } {
    const parts = segments(path);
    const name = parts.pop();
    if (name === undefined) throw fsError("EINVAL", path);
    const dir = this.#lookup(`/${parts.join("/")}`);
    if (dir === undefined || !this.#live.dirs.has(dir)) throw fsError("ENOENT", path);
    return { dir, name };
  }
}

function segments(path: string): string[] {
  return path.split("/").filter((s) => s !== "" && s !== ".");
}
