import type { BlobStore } from "../blob/port.ts";
import { LibsqlCache, type SqlClient } from "../cache/libsql.ts";
import { createApp, type EdgeFunction } from "../http/app.ts";
import { authConfigured, Authenticator } from "../http/auth/authenticator.ts";
import { FeedHub, type FeedSource } from "../live/feed.ts";
import { InProcessNotifier, type Notifier } from "../live/notifier.ts";
import { Rollout } from "../rollout/rollout.ts";
import { ArtifactService, type CommitListener, type HeadSource, type WritePath } from "../service/artifact-service.ts";
import type { Config } from "./config.ts";

export interface Wiring {
  config: Config;
  blobStore: BlobStore;
  /** Opens the libSQL client (each runtime brings its own: native file client or the web client). */
  connectLibsql: () => SqlClient;
  /** Wake-up hints between writers and streams; in-process unless the runtime has better. */
  notifier?: Notifier;
  /** Serve one edge function's route only. */
  only?: EdgeFunction;
  /** See LibsqlCacheOptions.schema. */
  cacheSchema?: { ready: boolean };
  /** See ServiceOptions.healEveryMs: on for long-lived processes (the default), off on Workers. */
  healEveryMs?: number;
  /** See ServiceOptions.background (Workers: the request's waitUntil). */
  background?: (work: Promise<void>) => void;
  /** See ServiceOptions.unref (Node and Deno each have their own). */
  unref?: (timer: ReturnType<typeof setTimeout>) => void;
  /** See ServiceOptions.writes (Workers: the thread's sequencer). */
  writes?: WritePath;
  /** See ServiceOptions.heads (Workers: the thread's sequencer). */
  heads?: HeadSource;
  /** See ServiceOptions.resident (the sequencer itself). */
  resident?: boolean;
  /** See ServiceOptions.onDurable (the sequencer pushes events there). */
  onDurable?: CommitListener;
  /** Where streams get their feed (default: one FeedHub for the process, hinted by `notifier`). */
  feeds?: (reader: ArtifactService) => FeedSource;
}

/** Builds the service and the Hono app the same way on every runtime. */
export function wire(wiring: Wiring) {
  const {
    config,
    blobStore,
    connectLibsql,
    notifier = new InProcessNotifier(),
    only,
    cacheSchema,
    healEveryMs = 1000,
  } = wiring;
  const cache = new LibsqlCache({
    connect: connectLibsql,
    local: config.libsqlUrl.startsWith("file:"),
    ...(cacheSchema ? { schema: cacheSchema } : {}),
  });
  const rollout = new Rollout(blobStore);
  const limits = { maxPayloadBytes: config.maxPayloadBytes, maxArtifactsPerThread: config.maxArtifactsPerThread };
  const service = new ArtifactService({
    rollout,
    cache,
    limits,
    compaction: { everyPatches: config.compactEvery },
    deleteRetentionMs: config.deleteRetentionMs,
    onCommit: (tenant, commit) => notifier.notify(tenant, commit.threadId, commit.lastSeq),
    healEveryMs,
    ...(wiring.background ? { background: wiring.background } : {}),
    ...(wiring.unref ? { unref: wiring.unref } : {}),
    ...(wiring.writes ? { writes: wiring.writes } : {}),
    ...(wiring.heads ? { heads: wiring.heads } : {}),
    ...(wiring.resident ? { resident: true } : {}),
    ...(wiring.onDurable ? { onDurable: wiring.onDurable } : {}),
  });
  const hub = new FeedHub({ reader: service, notifier, pollMs: config.ssePollMs });
  const feeds = wiring.feeds ? wiring.feeds(service) : hub;
  const app = createApp({
    service,
    limits,
    cursorSecret: config.cursorSecret,
    authenticator: authConfigured(config.auth) ? new Authenticator(config.auth) : null,
    corsOrigins: config.corsOrigins,
    ...(only ? { only } : {}),
    live: {
      hub: feeds,
      options: { retryMs: 2000, pingMs: config.ssePingMs, maxLifetimeMs: config.sseMaxLifetimeMs },
    },
  });
  return { app, service, cache, rollout, hub, notifier };
}
