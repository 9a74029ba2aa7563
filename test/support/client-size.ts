/**
 * What the client costs a browser app: `thread-artifacts/client` with the live store, and
 * with the React hooks (`react` external: the app has it already), bundled by esbuild for
 * browsers, minified, then gzipped and brotli-compressed as a server would send them.
 * `npm run size:client` prints the table; test/client/react.test.ts keeps it in a budget.
 */
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export interface BundleSize {
  name: string;
  minified: number;
  gzip: number;
  brotli: number;
}

/** The entries measured: what an app imports, through the package's own exports. */
export const ENTRIES: Record<string, string> = {
  "client + store (createArtifactsClient, watchThread)": `
    import { createArtifactsClient } from "thread-artifacts/client";
    const client = createArtifactsClient({ baseUrl: location.origin });
    export const store = client.watchThread("t");`,
  "client + store + React hooks (useThread, useThreads)": `
    export { createArtifactsClient } from "thread-artifacts/client";
    export { useThread, useThreads } from "thread-artifacts/react";`,
};

export async function bundleSize(name: string, source: string): Promise<BundleSize> {
  const result = await build({
    stdin: { contents: source, resolveDir: ROOT, loader: "ts", sourcefile: "entry.ts" },
    absWorkingDir: ROOT,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    legalComments: "none",
    external: ["react", "react-dom"],
    write: false,
    logLevel: "silent",
  });
  const bytes = result.outputFiles[0]?.contents ?? new Uint8Array();
  return {
    name,
    minified: bytes.byteLength,
    gzip: gzipSync(bytes, { level: 9 }).byteLength,
    brotli: brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).byteLength,
  };
}

export function clientBundleSizes(): Promise<BundleSize[]> {
  return Promise.all(Object.entries(ENTRIES).map(([name, source]) => bundleSize(name, source)));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const size of await clientBundleSizes()) {
    console.log(`${size.name}: ${size.minified} B minified, ${size.gzip} B gzip, ${size.brotli} B brotli`);
  }
}
