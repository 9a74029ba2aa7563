import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { once } from "node:events";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FileSystemFlusher, type FileSystemFlusherOptions } from "../../src/blob/fs-flush.ts";

// syncfs(2) is Linux's: elsewhere the flusher answers false without starting anything
// (test/blob/fs.test.ts checks that the store's flush answers per platform).
describe.runIf(process.platform === "linux")("FileSystemFlusher (one helper process for every flush)", () => {
  let dir: string;
  let helpers: ChildProcess[];
  let flusher: FileSystemFlusher | null;

  const make = (options: FileSystemFlusherOptions = {}) => {
    flusher = new FileSystemFlusher({ ...options, onHelper: (helper) => helpers.push(helper) });
    return flusher;
  };

  /** A folder holding a fake `sync` that waits for a line on its stdin (the helper's pipe) and fails. */
  const hangingSync = async () => {
    const bin = join(dir, "bin");
    await mkdir(bin);
    await writeFile(join(bin, "sync"), "#!/bin/sh\nread line\nexit 1\n", "utf8");
    await chmod(join(bin, "sync"), 0o755);
    return { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}` };
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "fs-flush-"));
    helpers = [];
    flusher = null;
  });

  afterEach(async () => {
    flusher?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("runs every flush, one after another or many at once, through one helper started on the first", async () => {
    const flush = make();
    expect(helpers).toHaveLength(0);
    for (let i = 0; i < 3; i++) expect(await flush.flush(dir)).toBe(true);
    expect(await Promise.all(Array.from({ length: 10 }, () => flush.flush(dir)))).toEqual(Array(10).fill(true));
    expect(helpers).toHaveLength(1);
    expect(helpers[0]?.exitCode).toBeNull();
  });

  it("flushes a folder whose name has a line break with a process of its own (it cannot go on the helper's line)", async () => {
    const odd = join(dir, "a\nb");
    await mkdir(odd);
    const flush = make();
    expect(await flush.flush(odd)).toBe(true);
    expect(helpers).toHaveLength(0);
  });

  it("answers a failed flush false, that one only", async () => {
    const flush = make();
    expect(await flush.flush(join(dir, "no-such-folder"))).toBe(false);
    expect(await flush.flush(dir)).toBe(true);
    expect(helpers).toHaveLength(1);
  });

  it("answers false from then on where there is no sync to run, without starting helpers again", async () => {
    const flush = make({ env: { PATH: join(dir, "nowhere") } });
    expect(await flush.flush(dir)).toBe(false);
    expect(await flush.flush(dir)).toBe(false);
    expect(helpers).toHaveLength(1);
  });

  it("answers false from then on where there is no shell", async () => {
    const flush = make({ shell: join(dir, "no-shell") });
    expect(await flush.flush(dir)).toBe(false);
    expect(await flush.flush(dir)).toBe(false);
    expect(helpers).toHaveLength(1);
  });

  it("starts a new helper after one died", async () => {
    const flush = make();
    expect(await flush.flush(dir)).toBe(true);
    const [first] = helpers;
    const exited = once(first as ChildProcess, "exit");
    first?.kill("SIGKILL");
    await exited;
    expect(await flush.flush(dir)).toBe(true);
    expect(helpers).toHaveLength(2);
  });

  it("answers a flush false when its helper dies before answering", async () => {
    const flush = make({ env: await hangingSync() });
    const answer = flush.flush(dir);
    const [helper] = helpers;
    helper?.kill("SIGKILL");
    expect(await answer).toBe(false);
  });

  it("answers a flush false past its deadline and replaces the helper", async () => {
    const env = await hangingSync();
    const flush = make({ env, timeoutMs: 50 });
    expect(await flush.flush(dir)).toBe(false);
    expect(helpers).toHaveLength(1);
    await once(helpers[0] as ChildProcess, "exit");
    // The next flush gets a helper of its own (and still hangs: this fake sync never succeeds).
    expect(await flush.flush(dir)).toBe(false);
    expect(helpers).toHaveLength(2);
  });

  it("answers the flushes in flight false when closed", async () => {
    const flush = make({ env: await hangingSync() });
    const answers = [flush.flush(dir), flush.flush(dir)];
    flush.close();
    expect(await Promise.all(answers)).toEqual([false, false]);
  });
});
