/**
 * The Durable Streams reference server (`@durable-streams/server`), file-backed
 * (stream log files + LMDB metadata; each append is fdatasync'ed before it is
 * acknowledged). Env: DS_DATA_DIR, PORT, HOST.
 *
 * Protocol used by the bench: `PUT /v1/stream/<name>` (Content-Type: application/json)
 * creates a stream; `POST` appends a JSON message; `GET ...?offset=-1&live=sse` tails it.
 */
import { DurableStreamTestServer } from "@durable-streams/server";

const dataDir = process.env.DS_DATA_DIR;
if (!dataDir) throw new Error("DS_DATA_DIR is required");
const server = new DurableStreamTestServer({
  port: Number(process.env.PORT ?? 0),
  host: process.env.HOST ?? "127.0.0.1",
  dataDir,
});
const url = await server.start();
console.log(`durable-streams listening on ${url}`);
const shutdown = () => {
  // Its stop() waits for open connections; the bench is done with them.
  const force = setTimeout(() => process.exit(0), 500);
  force.unref();
  server.stop().finally(() => process.exit(0));
};
process.once("SIGTERM", shutdown);
process.once("SIGINT", shutdown);
