import { defineConfig } from "vitest/config";

/**
 * The browser suite (`npm run test:browser`): the live page in Debian's Chromium through
 * playwright-core. Never part of `npm test`; needs /usr/bin/chromium (.ci/run installs it).
 */
export default defineConfig({
  test: {
    include: ["test/browser/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 1,
  },
});
