/**
 * The journal's flushes on their own thread (src/blob/fs-commit-thread.ts), on the real
 * file system: the thread's records are the journal's format (a new process replays
 * them), each commit's outcome comes back on its own (created, another writer's, failed
 * with its code), a failed append fails the flush with the file system's code, and a
 * journal without a descriptor is flushed in process.
 */
import { mkdtemp, readdir, readFile, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type CommitEntry, inProcessCommitWriter, journalLine } from "../../src/blob/fs-commit-batch.ts";
import { CommitThread } from "../../src/blob/fs-commit-thread.ts";
import { FsBlobStore } from "../../src/blob/fs.ts";
import { type FileOps, nodeFsOps } from "../../src/blob/fs-ops.ts";

const run = promisify(execFile);
const KEY = "tenants/t/threads/a/commits/000000000001.json";

describe("the journal's flushes on a thread", () => {
  let root: string;
  let thread: CommitThread;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "commit-thread-"));
    thread = new CommitThread(inProcessCommitWriter(nodeFsOps));
  });

  afterEach(async () => {
    await thread.close();
    await rm(root, { recursive: true, force: true });
  });

  const entry = (key: string, body: string): CommitEntry => ({ key, target: join(root, key), body, t: Date.now() });

  it("writes the journal's own records: a process started after a loss of the objects replays them", async () => {
    const store = new FsBlobStore(root, nodeFsOps, {
      journaled: () => true,
      pid: 1_000_000_001,
      isAlive: () => false,
      commitWriter: () => thread,
    });
    const body = '{"x":"héllo \\n 🚀 \\"quoted\\""}';
    expect(await store.putIfAbsent(KEY, body)).toBe("created");
    expect(await store.putIfAbsent(KEY, "another writer's")).toBe("exists");
    // The object's file as a power loss leaves it when its name made it and its data did not.
    await writeFile(join(root, KEY), "");
    const next = new FsBlobStore(root, nodeFsOps, { journaled: () => true, pid: process.pid, isAlive: () => false });
    expect(await next.get(KEY)).toBe(body);
    await next.close();
    await store.close();
    // Removed too: a lost name is restored the same way.
    await unlink(join(root, KEY));
    await writeFile(join(root, ".journal", "1000000002-1-aaaaaaaa.log"), journalLine(entry(KEY, body)));
    const third = new FsBlobStore(root, nodeFsOps, { journaled: () => true, pid: process.pid, isAlive: () => false });
    expect(await third.get(KEY)).toBe(body);
    await third.close();
  });

  it("answers each commit of a flush on its own, appends only the created ones, and leaves no temp file", async () => {
    const journalPath = join(root, "journal.log");
    const journal = await nodeFsOps.open(journalPath, "a");
    await writeFile(join(root, "taken.json"), "someone's");
    await writeFile(join(root, "a-file"), "not a folder");
    const outcomes = await thread.write(journal, join(root, ".tmp"), [
      entry("threads/new/commits/1.json", "one"),
      entry("taken.json", "two"),
      entry("a-file/commits/1.json", "three"),
      entry("threads/new/commits/2.json", "four"),
    ]);
    await journal.close();
    expect(outcomes.slice(0, 2)).toEqual(["created", "exists"]);
    expect(outcomes[2]).toMatchObject({ failed: { code: "ENOTDIR" } });
    expect(outcomes[3]).toBe("created");
    expect(await readFile(join(root, "threads/new/commits/1.json"), "utf8")).toBe("one");
    expect(await readFile(join(root, "taken.json"), "utf8")).toBe("someone's");
    const records = (await readFile(journalPath, "utf8")).trim().split("\n").map((line) => JSON.parse(line));
    expect(records.map((record) => [record.k, record.b])).toEqual([
      ["threads/new/commits/1.json", "one"],
      ["threads/new/commits/2.json", "four"],
    ]);
    expect(await readdir(join(root, ".tmp"))).toEqual([]);
  });

  it("fails the flush with the file system's code when the append fails", async () => {
    // A descriptor no file has (not a closed one: the process may have reused it meanwhile).
    const opened = await nodeFsOps.open(join(root, "journal.log"), "a");
    await opened.close();
    const journal: FileOps = { ...opened, fd: 999_999 };
    await expect(thread.write(journal, join(root, ".tmp"), [entry("threads/a/commits/1.json", "one")]))
      .rejects.toMatchObject({ code: "EBADF" });
  });

  it("flushes a journal without a descriptor in process", async () => {
    const appended: string[] = [];
    const journal: FileOps = {
      writeFile: () => Promise.resolve(),
      appendSync: (data) => void appended.push(data),
      sync: () => Promise.resolve(),
      datasync: () => Promise.resolve(),
      close: () => Promise.resolve(),
    };
    const one = entry("threads/a/commits/1.json", "one");
    expect(await thread.write(journal, join(root, ".tmp"), [one])).toEqual(["created"]);
    expect(appended).toEqual([journalLine(one)]);
  });

  it("a flush in flight keeps the process alive, an idle thread does not (the last checkpoint at shutdown)", async () => {
    const script = `
      import { CommitThread } from ${
      JSON.stringify(new URL("../../src/blob/fs-commit-thread.ts", import.meta.url).href)
    };
      import { inProcessCommitWriter } from ${
      JSON.stringify(new URL("../../src/blob/fs-commit-batch.ts", import.meta.url).href)
    };
      import { nodeFsOps } from ${JSON.stringify(new URL("../../src/blob/fs-ops.ts", import.meta.url).href)};
      const thread = new CommitThread(inProcessCommitWriter(nodeFsOps));
      const journal = await nodeFsOps.open(${JSON.stringify(join(root, "journal.log"))}, "a");
      const target = ${JSON.stringify(join(root, "threads/a/commits/1.json"))};
      thread.write(journal, ${JSON.stringify(join(root, ".tmp"))}, [{ key: "k", target, body: "one", t: 1 }])
        .then((outcomes) => console.log(JSON.stringify(outcomes)));
    `;
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script]);
    expect(stdout.trim()).toBe('["created"]');
    expect(await readFile(join(root, "journal.log"), "utf8")).toContain('"b":"one"');
  });

  it("once closed, flushes in process", async () => {
    await thread.close();
    const journal = await nodeFsOps.open(join(root, "journal.log"), "a");
    expect(await thread.write(journal, join(root, ".tmp"), [entry("threads/a/commits/1.json", "one")])).toEqual([
      "created",
    ]);
    await journal.close();
    expect(await readFile(join(root, "journal.log"), "utf8")).toContain('"b":"one"');
  });
});
