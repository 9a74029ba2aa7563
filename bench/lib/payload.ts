/** Filler that makes a create body about 1 KiB. */
export const FILLER = "lorem ipsum dolor sit amet ".repeat(40).slice(0, 960);

/** A create-artifact body of ~1 KiB (no identityKey: a plain create). The floors and Durable Streams get the same bytes. */
export function createBody(i = 0): string {
  return JSON.stringify({ artifactType: "bench.note", payload: { i, text: FILLER } });
}

/** A ~1 KiB create body carrying the sender's monotonic send time, for write-to-receive latency. */
export function timedBody(i: number, sentAt: number): string {
  return JSON.stringify({ artifactType: "bench.sse", payload: { sentAt, i, text: FILLER } });
}

/** Pulls `sentAt` and `i` out of an event's data without a full JSON parse (the client must keep up with 1,000 streams). */
export function timedFields(data: string): { sentAt: number; i: number } | null {
  const sent = /"sentAt":([0-9.e+-]+),"i":(\d+)/.exec(data);
  return sent ? { sentAt: Number(sent[1]), i: Number(sent[2]) } : null;
}

/** An update body of ~1 KiB. */
export function updateBody(i: number): string {
  return JSON.stringify({ payload: { i, text: FILLER } });
}
