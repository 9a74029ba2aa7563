/**
 * How fast this disk makes a commit-like file right now: 2,000 times a 1 KiB file
 * created, linked under another name and its first name removed, as the journaled fs
 * store does per commit (FsOps.sync), on the main thread. The files are kept (the run's
 * work folder goes at its end), since removing them is what this measures the effect of.
 *
 * Why the bench reports it: ext4 without a journal (this machine's root) keeps a freed
 * inode from reuse for 1 to 6 minutes, and to find a free inode it looks at each
 * recently freed one in turn (`recently_deleted`, profiled with perf). After a mass
 * deletion (a test suite's temp folders, a previous run's work folder) making a file
 * cost 400–800 µs of kernel CPU instead of ~40 µs, and our creates, one file per commit,
 * ran at half their speed while the floors and Durable Streams (no new files) did not.
 */
import { linkSync, mkdirSync, mkdtempSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export function fsProbe(parent: string, files = 2000): { microsPerFile: number } {
  const dir = mkdtempSync(join(parent, "fs-probe-"));
  mkdirSync(join(dir, "temp"));
  mkdirSync(join(dir, "named"));
  const body = "x".repeat(1024);
  const started = performance.now();
  for (let i = 0; i < files; i++) {
    const temp = join(dir, "temp", String(i));
    writeFileSync(temp, body, { flag: "wx" });
    linkSync(temp, join(dir, "named", `${i}.json`));
    unlinkSync(temp);
  }
  return { microsPerFile: ((performance.now() - started) * 1000) / files };
}
