/**
 * Debian's Chromium (`apt-get install -y chromium`), driven by playwright-core: never a
 * downloaded browser. The flags keep it headless, sandbox-free (CI runs as root) and
 * off the network except for the pages a test opens.
 */
export const CHROMIUM = "/usr/bin/chromium";

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
