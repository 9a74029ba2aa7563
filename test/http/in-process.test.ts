import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestApp } from "../support/in-process.ts";
import { describeHttpContract } from "./contract.ts";

describeHttpContract("in-process app", async (env) => {
  const dir = mkdtempSync(join(tmpdir(), "artifacts-inprocess-contract-"));
  let t = createTestApp({ env, dir });
  return {
    fetch: async (path, init) => t.app.request(path, init),
    // As a process would: streams end (their clients reconnect), then a new app on the same folder.
    restart: async () => {
      t.feeds.drain();
      await t.close();
      t = createTestApp({ env, dir });
    },
    // Another app on the same folder: its own writer, cache connection and feeds.
    sibling: async () => {
      const other = createTestApp({ env, dir });
      return {
        fetch: async (path, init) => other.app.request(path, init),
        close: async () => {
          other.feeds.drain();
          await other.close();
        },
      };
    },
    close: async () => {
      await t.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
