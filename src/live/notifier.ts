import { parseThreadKey, threadKey } from "../model/ids.ts";

/**
 * A wake-up hint that a thread has new patches. Only a hint: streams read the durable
 * log, so a lost, late or duplicated hint changes when an event is sent, never what.
 */
export interface Notifier {
  notify(tenant: string, threadId: string, seq: number): void;
  /** Calls `listener` on hints for this thread until the returned function is called. */
  subscribe(tenant: string, threadId: string, listener: () => void): () => void;
  close(): void;
}

const topicOf = threadKey;

/** Hints within one process (one isolate). */
export class InProcessNotifier implements Notifier {
  readonly #target = new EventTarget();

  notify(tenant: string, threadId: string, _seq: number): void {
    this.#target.dispatchEvent(new Event(topicOf(tenant, threadId)));
  }

  subscribe(tenant: string, threadId: string, listener: () => void): () => void {
    const topic = topicOf(tenant, threadId);
    const handler = () => listener();
    this.#target.addEventListener(topic, handler);
    return () => this.#target.removeEventListener(topic, handler);
  }

  close(): void {}
}

interface HintMessage {
  topic: string;
  seq: number;
}

/**
 * Hints across isolates through a BroadcastChannel (Deno Deploy delivers them between
 * isolates of one deployment), plus the in-process ones a channel does not echo back.
 */
export class BroadcastChannelNotifier implements Notifier {
  readonly #local = new InProcessNotifier();
  readonly #channel: BroadcastChannel;

  constructor(name = "thread-artifacts") {
    this.#channel = new BroadcastChannel(name);
    this.#channel.onmessage = (event: MessageEvent<HintMessage>) => {
      const thread = parseThreadKey(String(event.data?.topic ?? ""));
      if (thread) this.#local.notify(thread.tenant, thread.threadId, Number(event.data.seq));
    };
  }

  notify(tenant: string, threadId: string, seq: number): void {
    this.#local.notify(tenant, threadId, seq);
    try {
      this.#channel.postMessage({ topic: topicOf(tenant, threadId), seq } satisfies HintMessage);
    } catch {
      // A hint that cannot be sent is a hint lost: polling still delivers the event.
    }
  }

  subscribe(tenant: string, threadId: string, listener: () => void): () => void {
    return this.#local.subscribe(tenant, threadId, listener);
  }

  close(): void {
    this.#channel.close();
  }
}
