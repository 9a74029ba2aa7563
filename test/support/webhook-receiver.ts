/**
 * A real webhook receiver on loopback for delivery tests: a node:http server that
 * verifies every request with the `standardwebhooks` package (as any receiver would),
 * records it in arrival order, and answers as the test says (a status, a redirect, an
 * endless body, or no answer at all).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { expect } from "vitest";
import { Webhook as StandardWebhook } from "standardwebhooks";

export interface Received {
  /** The request path (one path per webhook in a test). */
  path: string;
  headers: Record<string, string>;
  body: string;
  /** `webhook-id`. */
  id: string;
  /** Whether `new Webhook(secret).verify(body, headers)` accepted it. */
  verified: boolean;
  verifyError?: string;
  /** The parsed body (`{type, timestamp, data}`). */
  message: { type: string; timestamp: string; data: { threadId: string; seq: number; [key: string]: unknown } };
  threadId: string;
  seq: number;
  /** What this receiver answered (0: nothing, the request was left hanging). */
  status: number;
}

/** How to answer: a status (and headers), `hang` (never answer), or `endless` (a 200 whose body never ends). */
export type Reply = { status: number; headers?: Record<string, string> } | "hang" | "endless";

export class WebhookReceiver {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #timers = new Set<ReturnType<typeof setInterval>>();
  /** Every request, in arrival order. */
  readonly received: Received[] = [];
  /** Signing secrets by path (set once the webhook is created). */
  readonly secrets = new Map<string, string>();
  /** Requests to paths nobody registered (a redirect followed would land here). */
  readonly strays: string[] = [];
  /** How each request is answered; default: 200 when verified, else 400. */
  respond: (request: Received, attempt: number) => Reply = (request) => ({ status: request.verified ? 200 : 400 });
  #port = 0;

  private constructor() {
    this.#server = createServer((request, response) => {
      // A sender that dies mid-request (a killed server) leaves a request that never completes.
      this.#handle(request, response).catch(() => response.destroy());
    });
    this.#server.on("connection", (socket) => {
      this.#sockets.add(socket);
      socket.once("close", () => this.#sockets.delete(socket));
    });
  }

  static async start(): Promise<WebhookReceiver> {
    const receiver = new WebhookReceiver();
    await new Promise<void>((resolve) => receiver.#server.listen(0, "127.0.0.1", resolve));
    receiver.#port = (receiver.#server.address() as AddressInfo).port;
    return receiver;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.#port}${path}`;
  }

  /** The requests to `path`, optionally of one thread. */
  to(path: string, threadId?: string): Received[] {
    return this.received.filter((r) => r.path === path && (threadId === undefined || r.threadId === threadId));
  }

  /** The seqs of `threadId` that `path` answered 2xx, in arrival order. */
  acked(path: string, threadId: string): number[] {
    return this.to(path, threadId).filter((r) => r.status >= 200 && r.status < 300).map((r) => r.seq);
  }

  async close(): Promise<void> {
    for (const timer of this.#timers) clearInterval(timer);
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const path = request.url ?? "";
    const secret = this.secrets.get(path);
    if (secret === undefined) {
      this.strays.push(path);
      response.writeHead(404).end();
      return;
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(request.headers)) {
      if (typeof value === "string") headers[name] = value;
    }
    let verified = true;
    let verifyError: string | undefined;
    try {
      new StandardWebhook(secret).verify(body, headers);
    } catch (error) {
      verified = false;
      verifyError = String(error);
    }
    const message = JSON.parse(body) as Received["message"];
    const received: Received = {
      path,
      headers,
      body,
      id: headers["webhook-id"] ?? "",
      verified,
      ...(verifyError === undefined ? {} : { verifyError }),
      message,
      threadId: message.data.threadId,
      seq: message.data.seq,
      status: 0,
    };
    const attempt = this.received.filter((r) => r.path === path && r.id === received.id).length + 1;
    this.received.push(received);
    const reply = this.respond(received, attempt);
    if (reply === "hang") return;
    if (reply === "endless") {
      received.status = 200;
      response.writeHead(200, { "content-type": "text/plain" });
      const chunk = "x".repeat(16 * 1024);
      const timer = setInterval(() => {
        if (response.destroyed || response.writableEnded) clearInterval(timer);
        else response.write(chunk);
      }, 1);
      this.#timers.add(timer);
      response.once("close", () => {
        clearInterval(timer);
        this.#timers.delete(timer);
      });
      return;
    }
    received.status = reply.status;
    response.writeHead(reply.status, reply.headers ?? {}).end();
  }
}

/**
 * API.md's order: a request for seq s of a thread is sent only after every earlier event
 * of it the webhook follows was acknowledged (`expected`: those seqs, ascending).
 */
export function expectSentInOrder(requests: Received[], expected: number[]): void {
  const acked = new Set<number>();
  for (const request of requests) {
    const missing = expected.filter((seq) => seq < request.seq && !acked.has(seq));
    expect(missing, `seq ${request.seq} was sent before ${missing.join(",")} was acknowledged`).toEqual([]);
    if (request.status >= 200 && request.status < 300) acked.add(request.seq);
  }
}
