/**
 * One flush of the fs store's journal (fs-journal.ts): each commit's file put in place
 * (put-if-absent: a temp file linked at its key, with no fsync of its own), then the
 * records of those created appended to the journal in one write and made durable by one
 * `fdatasync`. Putting the files in place inside the flush, not before it, lets the whole
 * flush run elsewhere in one hop: on a thread of its own on Node (fs-commit-thread.ts),
 * in process here (every runtime, and the simulated disk of the power-loss tests).
 */
import { dirname, join } from "node:path";
import { type FileOps, type FsOps, isCode } from "./fs-ops.ts";

/** A commit: its file, and what its journal record holds (appended only if the file was created). */
export interface CommitEntry {
  key: string;
  /** The file's path (the key's). */
  target: string;
  body: string;
  /** When it was committed (ms since the epoch): records too old are never replayed. */
  t: number;
}

/**
 * A journal record: one line of JSON (fs-journal.ts reads them back). The thread's script
 * (fs-commit-thread.ts) writes the same line.
 */
export function journalLine(entry: CommitEntry): string {
  return `${JSON.stringify({ k: entry.key, b: entry.body, t: entry.t })}\n`;
}

/** Per entry: created (and durable once the batch resolves), another writer's already, or failed. */
export type CommitOutcome = "created" | "exists" | { failed: unknown };

export interface CommitBatchWriter {
  /**
   * Puts every entry's file in place through temp files in `tempDir`, then appends the
   * created ones' lines to `journal` and fdatasyncs it. Rejects when the append or the
   * sync failed: then no created entry is known durable.
   */
  write(journal: FileOps, tempDir: string, entries: readonly CommitEntry[]): Promise<CommitOutcome[]>;
  /** Ends what the writer holds (a thread); in process: nothing. */
  close(): Promise<void>;
}

/**
 * Rounds a put tries before an ENOENT stands: each round is a race lost to a delete that
 * emptied and removed the folder (or `.tmp` removed by hand), which ends.
 */
export const PUT_ATTEMPTS = 8;

/** The flush in this thread, through FsOps (its synchronous calls: see FsOps.sync). */
export function inProcessCommitWriter(fs: FsOps): CommitBatchWriter {
  return {
    async write(journal, tempDir, entries) {
      const outcomes: CommitOutcome[] = [];
      let lines = "";
      for (const entry of entries) {
        try {
          const created = await putNew(fs, tempDir, entry);
          outcomes.push(created ? "created" : "exists");
          if (created) lines += journalLine(entry);
        } catch (error) {
          outcomes.push({ failed: error });
        }
      }
      if (lines !== "") {
        journal.appendSync(lines);
        await journal.datasync();
      }
      return outcomes;
    },
    close: () => Promise.resolve(),
  };
}

/** Writes a temp file and links it at the entry's target: false if something is there already. */
async function putNew(fs: FsOps, tempDir: string, entry: CommitEntry): Promise<boolean> {
  for (let attempt = 1;; attempt++) {
    const temp = join(tempDir, crypto.randomUUID());
    let error: unknown;
    try {
      fs.sync.writeNew(temp, entry.body);
      try {
        fs.sync.link(temp, entry.target);
        return true;
      } catch (linkError) {
        if (isCode(linkError, "EEXIST")) return false;
        error = linkError;
      } finally {
        removeTemp(fs, temp);
      }
    } catch (writeError) {
      error = writeError;
      removeTemp(fs, temp);
    }
    // A folder missing: never made yet (a new thread), or removed by a delete meanwhile.
    // Its name becomes durable with the next checkpoint's flush of the file system.
    if (!isCode(error, "ENOENT") || attempt >= PUT_ATTEMPTS) throw error;
    await fs.mkdir(tempDir, { recursive: true });
    await fs.mkdir(dirname(entry.target), { recursive: true });
  }
}

function removeTemp(fs: FsOps, temp: string): void {
  try {
    fs.sync.unlink(temp);
  } catch {
    // Missing (never made), or left in .tmp: harmless, never read.
  }
}

/** A writer made at the first flush: where to run it is decided once the process is set up (its CPUs). */
export function lazyCommitWriter(make: () => CommitBatchWriter): CommitBatchWriter {
  let writer: CommitBatchWriter | null = null;
  return {
    write: (journal, tempDir, entries) => (writer ??= make()).write(journal, tempDir, entries),
    close: () => writer?.close() ?? Promise.resolve(),
  };
}
