import type { EdgeFunction } from "../http/app.ts";
import { misconfiguredResponse } from "../http/problem.ts";
import { PushedFeeds } from "../live/pushed-feeds.ts";
import { ConfigError } from "./config.ts";
import { type DurableObjectNamespaceLike, SequencerClient } from "./sequencer.ts";
import { loadWorkerContext, type WorkerContext, type WorkerEnv } from "./workers-context.ts";
import type { ArtifactService } from "../service/artifact-service.ts";
import { wire } from "./wire.ts";

export type { WorkerEnv };

export interface WaitUntil {
  waitUntil(promise: Promise<unknown>): void;
}

/** With the sequencer, a stream reads its log only on this slow safety poll (pushes carry the events). */
const SAFETY_POLL_MS = 60_000;

/**
 * Serves one request on Workers. Everything is wired per request: Workers forbid one
 * request from touching I/O objects or settling promises of another, so no stream, lock
 * or feed may outlive its request. With the `SEQUENCER` binding, the thread's Durable
 * Object sequences its writes, knows its head and pushes its events to the streams;
 * without it, writers in different isolates coordinate through the rollout's
 * put-if-absent alone and streams poll.
 */
export async function workerFetch(
  request: Request,
  env: WorkerEnv,
  ctx: WaitUntil | undefined,
  only?: EdgeFunction,
): Promise<Response> {
  let context: WorkerContext;
  try {
    context = loadWorkerContext(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`configuration error: ${error.message}`);
    return misconfiguredResponse();
  }
  const sequencer = isNamespace(env.SEQUENCER) ? new SequencerClient(env.SEQUENCER) : undefined;
  const { app } = wire({
    ...context,
    // Nothing outlives a request here: the next write or strong read repairs a cache left behind.
    repairBehindEveryMs: 0,
    // Compaction runs after the answer; the request's waitUntil keeps the isolate for it.
    ...(ctx ? { background: (work: Promise<void>) => ctx.waitUntil(work) } : {}),
    ...(sequencer
      ? {
        writeMode: { kind: "forwarded", writes: sequencer, heads: sequencer } as const,
        feeds: (reader: ArtifactService) =>
          new PushedFeeds({
            reader,
            connect: (tenant, threadId) => sequencer.connect(tenant, threadId),
            safetyPollMs: SAFETY_POLL_MS,
          }),
      }
      : {}),
    ...(only ? { only } : {}),
  });
  return app.fetch(request);
}

function isNamespace(binding: unknown): binding is DurableObjectNamespaceLike {
  return typeof (binding as DurableObjectNamespaceLike | undefined)?.idFromName === "function";
}
