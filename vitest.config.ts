import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["test/browser/**"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration suites start child processes; keep the machine's two cores from thrashing.
    maxWorkers: 2,
  },
});
