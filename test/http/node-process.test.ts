import { Cluster } from "../support/cluster.ts";
import { describeHttpContract } from "./contract.ts";

describeHttpContract("Node server process", async (env) => {
  const cluster = new Cluster();
  const serverEnv = { DATA_DIR: cluster.tempDir("artifacts-node-contract-"), ...env };
  let server = await cluster.start(serverEnv);
  return {
    fetch: (path, init) => fetch(`${server.url}${path}`, init),
    restart: async () => {
      await server.stop();
      server = await cluster.start(serverEnv);
    },
    sibling: async () => {
      const other = await cluster.start(serverEnv);
      return { fetch: (path, init) => fetch(`${other.url}${path}`, init), close: () => other.stop() };
    },
    close: async () => {
      await server.stop();
      await cluster.cleanup();
    },
  };
});
