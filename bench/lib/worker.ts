/**
 * The load side of `startLoadWorker`: each IPC message is a request, answered with one
 * message (the result, or `{error}`). The process ends when the orchestrator disconnects.
 */
export function serveRequests<C, R>(handle: (config: C) => Promise<R>): void {
  if (!process.send) throw new Error("run this through bench/run.ts (needs an IPC channel)");
  process.on("message", (config: C) => {
    handle(config).then(
      (result) => process.send!(result as object),
      (error: unknown) =>
        process.send!({ error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
    );
  });
  process.on("disconnect", () => process.exit(0));
}
