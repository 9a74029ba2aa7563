import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer } from "../support/server-process.ts";
import { describeHttpContract } from "./contract.ts";

describeHttpContract("Node server process", async (env) => {
  const dir = mkdtempSync(join(tmpdir(), "artifacts-node-contract-"));
  let server = await startServer({ DATA_DIR: dir, ...env });
  return {
    fetch: (path, init) => fetch(`${server.url}${path}`, init),
    restart: async () => {
      await server.stop();
      server = await startServer({ DATA_DIR: dir, ...env });
    },
    close: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
