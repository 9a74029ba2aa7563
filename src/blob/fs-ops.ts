/**
 * The file system calls FsBlobStore makes, as one seam: node:fs/promises in production
 * (Node and Deno), and a simulated disk in the power-loss tests (test/support/power-loss-fs.ts),
 * which keeps what was fsynced apart from what was only written, and can drop the latter.
 */
import * as fs from "node:fs/promises";
import { closeSync, linkSync, openSync, unlinkSync, writeFileSync } from "node:fs";
import { syncFileSystem } from "./fs-flush.ts";

/** An open file: what FsBlobStore does with one. */
export interface FileOps {
  /** The descriptor, on the real file system (a journal's flush on its own thread writes through it). */
  readonly fd?: number;
  writeFile(data: string, encoding: "utf8"): Promise<void>;
  /**
   * Appends (a file opened `a`), synchronously: page cache only, the caller's fdatasync
   * makes it durable (a thread-pool round trip costs more than the write).
   */
  appendSync(data: string): void;
  /** fsync: the file's data (a folder's: its entries) survive a power loss. */
  sync(): Promise<void>;
  /** fdatasync: the file's data survive a power loss (what a journal needs). */
  datasync(): Promise<void>;
  close(): Promise<void>;
}

export interface DirEntry {
  name: string;
  isFile(): boolean;
  isDirectory(): boolean;
}

export interface FsOps {
  readFile(path: string, encoding: "utf8"): Promise<string>;
  /** `wx`: create, failing with EEXIST; `a`: create or append; `r`: open to fsync it (a folder too). */
  open(path: string, flags: "wx" | "a" | "r"): Promise<FileOps>;
  link(existing: string, path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  mkdir(path: string, options: { recursive: true }): Promise<unknown>;
  readdir(path: string, options: { withFileTypes: true }): Promise<DirEntry[]>;
  rmdir(path: string): Promise<void>;
  stat(path: string): Promise<{ isFile(): boolean }>;
  /**
   * Makes every file and folder name of the file system holding `path` durable at once
   * (Linux's syncfs(2)); false where it cannot, and the caller fsyncs one by one.
   */
  syncFileSystem(path: string): Promise<boolean>;
  /**
   * The journaled commit's steps, synchronous: none of them waits for the disk (no fsync:
   * the journal's shared fdatasync makes the commit durable), so each is a few µs of
   * page-cache work, cheaper done on the main thread than dispatched to the thread pool
   * and resumed (bench: about half the CPU per commit file).
   */
  sync: {
    /** Creates `path` (failing with EEXIST) holding `data`, and closes it. */
    writeNew(path: string, data: string): void;
    link(existing: string, path: string): void;
    unlink(path: string): void;
  };
}

/** The real file system. */
export const nodeFsOps: FsOps = {
  readFile: (path, encoding) => fs.readFile(path, encoding),
  open: async (path, flags) => {
    const handle = await fs.open(path, flags);
    return {
      fd: handle.fd,
      writeFile: (data, encoding) => handle.writeFile(data, encoding),
      appendSync: (data) => writeFileSync(handle.fd, data, "utf8"),
      sync: () => handle.sync(),
      datasync: () => handle.datasync(),
      close: () => handle.close(),
    };
  },
  link: (existing, path) => fs.link(existing, path),
  rename: (from, to) => fs.rename(from, to),
  unlink: (path) => fs.unlink(path),
  mkdir: (path, options) => fs.mkdir(path, options),
  readdir: (path, options) => fs.readdir(path, options),
  rmdir: (path) => fs.rmdir(path),
  stat: (path) => fs.stat(path),
  syncFileSystem,
  sync: {
    writeNew(path, data) {
      const fd = openSync(path, "wx");
      try {
        writeFileSync(fd, data, "utf8");
      } finally {
        closeSync(fd);
      }
    },
    link: (existing, path) => linkSync(existing, path),
    unlink: (path) => unlinkSync(path),
  },
};

/** Whether a file system call failed with this code (ENOENT, EEXIST…), as node:fs and the simulated disk report it. */
export function isCode(error: unknown, code: string): boolean {
  return typeof error === "object" && error !== null && (error as { code?: unknown }).code === code;
}
