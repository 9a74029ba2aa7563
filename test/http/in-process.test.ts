import { createTestApp } from "../support/in-process.ts";
import { describeHttpContract } from "./contract.ts";

describeHttpContract("in-process app", async (env) => {
  const t = createTestApp({ env });
  return {
    fetch: async (path, init) => t.app.request(path, init),
    close: async () => t.close(),
  };
});
