/**
 * Graceful close for a node:http server that really stops serving. `server.close()`
 * stops accepting connections but keeps serving requests on the ones already open,
 * and `closeIdleConnections()` does not count a connection that has not sent a request
 * yet (a client pool's spare socket) as idle: Node waits out its headers timeout. So a
 * process told to stop lingered for seconds, still answering whatever came on such a
 * connection while its successor was already listening; a stream opened there ended
 * at once (the old process was draining) and a client that does not reconnect after a
 * clean end (fetch-event-source) went silent for good. Here every connection without a
 * request in flight is closed at once, and every other one as its response finishes.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";

export interface ClosingServer {
  /** Stop listening, drop idle and unused connections now, the rest after their response; resolves once all are gone. */
  close(): Promise<void>;
}

export function trackConnections(server: Server): ClosingServer {
  /** Requests in flight per open connection. */
  const inFlight = new Map<Socket, number>();
  let closing = false;

  server.on("connection", (socket: Socket) => {
    inFlight.set(socket, 0);
    socket.once("close", () => inFlight.delete(socket));
  });
  // First, so it runs before the app writes anything of the response.
  server.prependListener("request", (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
    if (closing) response.shouldKeepAlive = false;
    response.once("close", () => {
      const left = (inFlight.get(socket) ?? 1) - 1;
      inFlight.set(socket, left);
      if (closing && left === 0) socket.destroy();
    });
  });

  return {
    close() {
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const [socket, requests] of inFlight) if (requests === 0) socket.destroy();
      return closed;
    },
  };
}
