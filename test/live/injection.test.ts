/**
 * Client-controlled strings cannot inject SSE fields or events. Payload strings (values
 * and keys), artifactType and identityKey carry line breaks of every kind the SSE spec
 * knows (LF, CR, CRLF), look-alike field lines (`data: `, `id: 99`, `event: x`,
 * `retry: 1`, `: comment`) and separators other parsers might split on (U+2028,
 * U+2029, U+0085, NUL). The raw stream is parsed with a spec-compliant parser: every
 * event's id must equal its seq, its type must be artifact-updated, its data must parse
 * back to the exact artifact, and no `retry:` or comment may appear beyond the server's own.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SseParser } from "../../src/client/sse-parser.ts";
import type { Artifact } from "../../src/model/artifact.ts";
import type { ArtifactEvent } from "../../src/model/patch.ts";
import { type LiveApp, newThreadId, startLiveApp } from "../support/live-server.ts";
import { SpecSseParser, SseConnection } from "../support/sse.ts";

let app: LiveApp;
beforeAll(async () => {
  app = await startLiveApp();
});
afterAll(() => app?.stop());

const HOSTILE = [
  "\n",
  "\r",
  "\r\n",
  "\n\n",
  "\r\r",
  "line one\nline two",
  "a\r\nb\rc\nd",
  "data: injected",
  '\ndata: {"seq":999}\n\n',
  "\r\nid: 99\r\n\r\n",
  "id: 99",
  "\nid: 99\n",
  "event: x",
  "\nevent: x\ndata: y\n\n",
  "retry: 1",
  "\nretry: 1\n\n",
  "\n: comment\n",
  "\u2028",
  "before\u2028after\u2029end",
  "\u0085next line",
  "nul\u0000byte",
  "\uFEFFbom",
  "\\n not a newline \\r",
];

/** Strings allowed as artifactType/identityKey (no control characters) that still look like SSE. */
const HOSTILE_NAMES = [
  "data: x",
  "id: 99",
  "event: x",
  "retry: 1",
  ": ping",
  "a\u2028b",
  "a\u2029b",
  "id:99 data:1 event:x",
];

describe("no SSE field injection", () => {
  it("payload strings and keys with line breaks and field look-alikes arrive as exactly the payload", async () => {
    const threadId = newThreadId("inject");
    const stream = await SseConnection.open(`${app.url}/v1/threads/${threadId}/events`);
    expect(stream.response.status).toBe(200);
    const written: Artifact[] = [];
    try {
      for (const [i, s] of HOSTILE.entries()) {
        const payload = { text: s, [s]: s, list: [s, { nested: s }], i };
        const r = await app.http("POST", `/v1/threads/${threadId}/artifacts`, { artifactType: "note", payload });
        expect(r.status, r.text).toBe(201);
        expect(r.json.artifact.payload).toEqual(payload);
        written.push(r.json.artifact);
      }
      // A bare hostile string as the whole payload, through an update.
      const first = written[0] as Artifact;
      const r = await app.http("PATCH", `/v1/threads/${threadId}/artifacts/${first.id}`, {
        payload: "\r\nid: 7\r\nevent: x\r\ndata: 1\r\n\r\n\u2028",
      });
      expect(r.status, r.text).toBe(200);
      written.push(r.json.artifact);

      const total = written.length;
      await stream.untilSeq(total);
      expectCleanStream(stream, total);
      expect(stream.events.map((e) => e.event.artifact)).toEqual(written);
      expect(stream.events.map((e) => e.event.seq)).toEqual(written.map((a) => a.seq));
    } finally {
      await stream.close();
    }
  });

  it("artifactType and identityKey that look like SSE fields cannot inject either", async () => {
    const threadId = newThreadId("inject-names");
    const stream = await SseConnection.open(`${app.url}/v1/threads/${threadId}/events`);
    const written: Artifact[] = [];
    try {
      for (const [i, name] of HOSTILE_NAMES.entries()) {
        const r = await app.http("POST", `/v1/threads/${threadId}/artifacts`, {
          artifactType: name,
          identityKey: `${name}#${i}`,
          payload: { i },
        });
        expect(r.status, r.text).toBe(201);
        written.push(r.json.artifact);
      }
      await stream.untilSeq(written.length);
      expectCleanStream(stream, written.length);
      expect(stream.events.map((e) => [e.event.artifact.artifactType, e.event.artifact.identityKey])).toEqual(
        HOSTILE_NAMES.map((name, i) => [name, `${name}#${i}`]),
      );
    } finally {
      await stream.close();
    }
  });

  it.each([
    ["artifactType", "\n"],
    ["artifactType", "a\rb"],
    ["artifactType", "x\r\ndata: y"],
    ["artifactType", "a\u0085b"],
    ["identityKey", "k\nid: 99"],
    ["identityKey", "k\r"],
    ["identityKey", "nul\u0000"],
  ])("%s with a control character (%j) is refused with 400 and appends nothing", async (field, value) => {
    const threadId = newThreadId("inject-refused");
    const body = { artifactType: "note", payload: 1, [field]: value };
    const r = await app.http("POST", `/v1/threads/${threadId}/artifacts`, body);
    expect(r.status, r.text).toBe(400);
    expect(r.json.code).toBe("invalid_request");
    expect((await app.http("GET", `/v1/threads/${threadId}`)).status).toBe(404);
  });
});

/** Asserts the stream is exactly: one retry, then `total` artifact-updated events whose ids are their seqs 1..total. */
function expectCleanStream(stream: SseConnection, total: number): void {
  const parser = stream.parser;
  expect(parser.retries).toEqual([2000]);
  expect(parser.comments.every((c) => c === "ping")).toBe(true);
  expect(parser.events.map((e) => e.type)).toEqual(Array(total).fill("artifact-updated"));
  expect(parser.events.map((e) => e.lastEventId)).toEqual(Array.from({ length: total }, (_, i) => String(i + 1)));
  for (const e of parser.events) {
    const event = JSON.parse(e.data) as ArtifactEvent;
    expect(String(event.seq)).toBe(e.lastEventId);
  }
  // Every line is one of the service's own: nothing a payload wrote became a line of its own.
  for (const line of parser.lines) {
    expect(line).toMatch(/^(|retry: 2000|: ping|id: \d+|event: artifact-updated|data: \{[^\r\n]*\})$/);
  }

  // The service's client parser reads the same stream the same way, however it is chunked.
  for (const chunkSize of [1, 7, 4096]) {
    const messages: Array<{ id: string | undefined; event: string; data: string }> = [];
    const retries: number[] = [];
    const clientParser = new SseParser((m) => messages.push(m), (ms) => retries.push(ms));
    for (let i = 0; i < stream.raw.length; i += chunkSize) clientParser.push(stream.raw.slice(i, i + chunkSize));
    expect(retries).toEqual([2000]);
    expect(messages).toEqual(parser.events.map((e) => ({ id: e.lastEventId, event: e.type, data: e.data })));
  }
  // And the spec parser agrees with itself when fed byte-sized pieces.
  const again = new SpecSseParser();
  for (const ch of stream.raw) again.push(ch);
  expect(again.events).toEqual(parser.events);
}
