import type { Client } from "@libsql/client";
import type { BlobStore } from "../blob/port.ts";
import { LibsqlCache } from "../cache/libsql.ts";
import { createApp } from "../http/app.ts";
import { Rollout } from "../rollout/rollout.ts";
import { ArtifactService, type CommitListener } from "../service/artifact-service.ts";
import type { Config } from "./config.ts";

export interface Wiring {
  config: Config;
  blobStore: BlobStore;
  /** Opens the libSQL client (each runtime brings its own: native file client or the web client). */
  connectLibsql: () => Client;
  onCommit?: CommitListener;
}

/** Builds the service and the Hono app the same way on every runtime. */
export function wire({ config, blobStore, connectLibsql, onCommit }: Wiring) {
  const cache = new LibsqlCache({ connect: connectLibsql, local: config.libsqlUrl.startsWith("file:") });
  const rollout = new Rollout(blobStore, { snapshotEvery: config.snapshotEvery });
  const service = new ArtifactService({
    rollout,
    cache,
    limits: { maxPayloadBytes: config.maxPayloadBytes, maxArtifactsPerThread: config.maxArtifactsPerThread },
    ...(onCommit ? { onCommit } : {}),
  });
  const app = createApp({ service, cursorSecret: config.cursorSecret });
  return { app, service, cache, rollout };
}
