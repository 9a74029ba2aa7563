/**
 * S3BlobStore against a scripted `fetch`: the exact requests it sends and how it reads
 * answers a local fake server cannot easily give (409 ConditionalRequestConflict, a 5xx
 * whose write may have landed, short list pages with escaped keys, verbose error bodies).
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { InvalidKeyError } from "../../src/blob/port.ts";
import { S3BlobStore, type S3BlobStoreOptions } from "../../src/blob/s3.ts";

const ENDPOINT = "http://127.0.0.1:9000";
const BUCKET = "rollouts";
const SECRET = "FAKE-SECRET-wJalrXUtnFEMI-K7MDENG-bPxRfiCY-4242";

interface Sent {
  method: string;
  url: URL;
  headers: Headers;
  body: string;
}

type Answer = Response | Error | ((sent: Sent) => Response);

/** A fetch that answers from `answers` in order and records every request; running out is a test failure. */
function scripted(answers: Answer[], options: Partial<S3BlobStoreOptions> = {}) {
  const sent: Sent[] = [];
  const queue = [...answers];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    const record: Sent = {
      method: request.method,
      url: new URL(request.url),
      headers: request.headers,
      body: await request.text(),
    };
    sent.push(record);
    const answer = queue.shift();
    if (answer === undefined) throw new Error(`unexpected request ${record.method} ${record.url}`);
    if (answer instanceof Error) throw answer;
    return typeof answer === "function" ? answer(record) : answer;
  };
  const store = new S3BlobStore({
    bucket: BUCKET,
    endpoint: ENDPOINT,
    region: "us-east-1",
    accessKeyId: "AKIAFAKEFAKEFAKE0001",
    secretAccessKey: SECRET,
    fetch,
    ...options,
  });
  return { store, sent, remaining: () => queue.length };
}

const ok = (body = "") => new Response(body, { status: 200 });
const s3Error = (status: number, code: string, extra = "") =>
  new Response(
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>m</Message>${extra}</Error>`,
    {
      status,
      headers: { "content-type": "application/xml" },
    },
  );
const listPage = (keys: string[], next?: string) =>
  ok(
    `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${BUCKET}</Name>` +
      `<IsTruncated>${next !== undefined}</IsTruncated>${
        next !== undefined ? `<NextContinuationToken>${next}</NextContinuationToken>` : ""
      }` +
      keys.map((key) => `<Contents><Key>${key}</Key><Size>1</Size></Contents>`).join("") +
      "</ListBucketResult>",
  );

describe("S3BlobStore requests (scripted fetch)", () => {
  it("putIfAbsent is a path-style, SigV4-signed PUT with If-None-Match: * and a signed payload hash", async () => {
    const { store, sent } = scripted([ok()]);
    const body = '{"v":1,"seq":1,"note":"héllo"}';
    expect(await store.putIfAbsent("tenants/t-1/threads/th:1/patches/000000000001.json", body)).toBe("created");
    expect(sent).toHaveLength(1);
    const [put] = sent as [Sent];
    expect(put.method).toBe("PUT");
    expect(put.url.href).toBe(`${ENDPOINT}/${BUCKET}/tenants/t-1/threads/th%3A1/patches/000000000001.json`);
    expect(put.headers.get("if-none-match")).toBe("*");
    expect(put.body).toBe(body);
    expect(put.headers.get("x-amz-content-sha256")).toBe(createHash("sha256").update(body, "utf8").digest("hex"));
    const authorization = put.headers.get("authorization") ?? "";
    expect(authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIAFAKEFAKEFAKE0001\/\d{8}\/us-east-1\/s3\/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$/,
    );
    expect(/SignedHeaders=([^,]+)/.exec(authorization)?.[1]?.split(";")).toEqual(
      expect.arrayContaining(["host", "if-none-match", "x-amz-content-sha256", "x-amz-date"]),
    );
  });

  it('412 Precondition Failed is "exists", at once: no retry and no read', async () => {
    const { store, sent } = scripted([s3Error(412, "PreconditionFailed")]);
    expect(await store.putIfAbsent("p/1.json", "mine")).toBe("exists");
    expect(sent.map((s) => s.method)).toEqual(["PUT"]);
  });

  it('409 ConditionalRequestConflict is retried with the same conditional PUT; a later 2xx is "created"', async () => {
    const { store, sent } = scripted([
      s3Error(409, "ConditionalRequestConflict"),
      s3Error(409, "ConditionalRequestConflict"),
      ok(),
    ]);
    expect(await store.putIfAbsent("p/1.json", "mine")).toBe("created");
    expect(sent.map((s) => [s.method, s.headers.get("if-none-match"), s.body])).toEqual([
      ["PUT", "*", "mine"],
      ["PUT", "*", "mine"],
      ["PUT", "*", "mine"],
    ]);
  });

  it('409 on every attempt is settled by a GET: another body there is "exists", nothing there is an error', async () => {
    const conflict = () => s3Error(409, "ConditionalRequestConflict");
    const taken = scripted([conflict(), conflict(), conflict(), conflict(), ok("theirs")]);
    expect(await taken.store.putIfAbsent("p/1.json", "mine")).toBe("exists");
    expect(taken.sent.map((s) => s.method)).toEqual(["PUT", "PUT", "PUT", "PUT", "GET"]);

    const empty = scripted([conflict(), conflict(), conflict(), conflict(), s3Error(404, "NoSuchKey")]);
    await expect(empty.store.putIfAbsent("p/1.json", "mine")).rejects.toThrow(
      "S3 PUT failed: 409 ConditionalRequestConflict",
    );
  });

  it('a 5xx or a dropped connection may have written: a retry that meets 412 reads the object, and only our body is "created"', async () => {
    const landed = scripted([s3Error(500, "InternalError"), s3Error(412, "PreconditionFailed"), ok("mine")]);
    expect(await landed.store.putIfAbsent("p/1.json", "mine")).toBe("created");
    expect(landed.sent.map((s) => s.method)).toEqual(["PUT", "PUT", "GET"]);

    const lost = scripted([new TypeError("fetch failed"), s3Error(412, "PreconditionFailed"), ok("theirs")]);
    expect(await lost.store.putIfAbsent("p/1.json", "mine")).toBe("exists");
    expect(lost.sent.map((s) => s.method)).toEqual(["PUT", "PUT", "GET"]);
  });

  it("a 4xx other than 409/412/429 fails putIfAbsent at once with the status and code", async () => {
    const { store, sent, remaining } = scripted([s3Error(403, "AccessDenied"), ok()]);
    await expect(store.putIfAbsent("p/1.json", "mine")).rejects.toThrow("S3 PUT failed: 403 AccessDenied");
    expect(sent).toHaveLength(1);
    expect(remaining()).toBe(1);
  });

  it("get: 200 is the body byte for byte (a leading BOM kept), 404 NoSuchKey is null, 404 NoSuchBucket is an error", async () => {
    const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode('{"é":1}')]);
    const { store, sent } = scripted([
      new Response(bom, { status: 200 }),
      s3Error(404, "NoSuchKey"),
      s3Error(404, "NoSuchBucket"),
    ]);
    expect(await store.get("a/b c.json")).toBe('\uFEFF{"é":1}');
    expect(sent[0]?.url.pathname).toBe(`/${BUCKET}/a/b%20c.json`);
    expect(sent[0]?.method).toBe("GET");
    expect(await store.get("a/missing.json")).toBeNull();
    await expect(store.get("a/missing.json")).rejects.toThrow("S3 GET failed: 404 NoSuchBucket");
  });

  it("reads retry 429 and 5xx, then give up with the last status", async () => {
    const flaky = scripted([s3Error(503, "SlowDown"), s3Error(429, "TooManyRequests"), ok("body")]);
    expect(await flaky.store.get("a.json")).toBe("body");
    expect(flaky.sent).toHaveLength(3);

    const down = scripted([
      s3Error(500, "InternalError"),
      s3Error(500, "InternalError"),
      s3Error(500, "InternalError"),
      s3Error(500, "InternalError"),
    ]);
    await expect(down.store.get("a.json")).rejects.toThrow("S3 GET failed: 500 InternalError");
    expect(down.sent).toHaveLength(4);
  });

  it("exists is a HEAD: 200 true, 404 false, anything else an error", async () => {
    const { store, sent } = scripted([ok(), new Response(null, { status: 404 }), new Response(null, { status: 403 })]);
    expect(await store.exists("a.json")).toBe(true);
    expect(await store.exists("a.json")).toBe(false);
    await expect(store.exists("a.json")).rejects.toThrow("S3 HEAD failed: 403");
    expect(sent.map((s) => s.method)).toEqual(["HEAD", "HEAD", "HEAD"]);
  });

  it("list sends ListObjectsV2, decodes XML entities in keys, and follows NextContinuationToken", async () => {
    const { store, sent } = scripted([
      listPage(["p/a&amp;b&lt;c&gt;d&quot;e&apos;f", "p/num&#39;&#x27;&#233;&#x1F600;"], "opaque+/=&amp;token"),
      listPage(["p/z"]),
    ]);
    expect(await store.list("p/", { startAfter: "p/0" })).toEqual([`p/a&b<c>d"e'f`, "p/num''é😀", "p/z"]);
    const [first, second] = sent as [Sent, Sent];
    expect(first.method).toBe("GET");
    expect(first.url.pathname).toBe(`/${BUCKET}`);
    expect(Object.fromEntries(first.url.searchParams)).toEqual({
      "list-type": "2",
      prefix: "p/",
      "start-after": "p/0",
      "max-keys": "1000",
    });
    // The token goes back exactly as S3 sent it (entity-decoded), and replaces start-after.
    expect(Object.fromEntries(second.url.searchParams)).toEqual({
      "list-type": "2",
      prefix: "p/",
      "continuation-token": "opaque+/=&token",
      "max-keys": "998",
    });
  });

  it("list stops at limit, asking for no more pages than it needs", async () => {
    const { store, sent, remaining } = scripted([
      listPage(["a", "b"], "t1"),
      listPage(["c", "d", "e"], "t2"),
      listPage(["f"]),
    ]);
    expect(await store.list("", { limit: 3 })).toEqual(["a", "b", "c"]);
    expect(sent.map((s) => s.url.searchParams.get("max-keys"))).toEqual(["3", "1"]);
    expect(remaining()).toBe(1);
  });

  it("list keeps the server's UTF-8 byte order and filters startAfter in that order", async () => {
    // A server that ignores start-after: the adapter still drops keys at or before it.
    const { store } = scripted([listPage(["k/\uFF5E", "k/\u{1F600}"]), listPage(["k/\uFF5E", "k/\u{1F600}"])]);
    expect(await store.list("k/")).toEqual(["k/\uFF5E", "k/\u{1F600}"]);
    expect(await store.list("k/", { startAfter: "k/\uFF5E" })).toEqual(["k/\u{1F600}"]);
  });

  it("error messages hold the status and code only, even when the server echoes the request and the secret", async () => {
    const echo = (sent: Sent) =>
      s3Error(
        403,
        "SignatureDoesNotMatch",
        `<StringToSign>${
          sent.headers.get("authorization")
        }</StringToSign><CanonicalRequest>${sent.url.href} ${SECRET}</CanonicalRequest>`,
      );
    const networkFailure = () =>
      Object.assign(new TypeError(`fetch failed for ${ENDPOINT}/${BUCKET}/a.json`), {
        cause: Object.assign(new Error(`socket hang up ${SECRET}`), { code: "ECONNRESET" }),
      });
    const { store } = scripted([echo, echo, networkFailure(), networkFailure(), networkFailure(), networkFailure()]);
    const errors: Error[] = [];
    await store.get("a.json").catch((error: Error) => errors.push(error));
    await store.putIfAbsent("a.json", "x").catch((error: Error) => errors.push(error));
    await store.get("a.json").catch((error: Error) => errors.push(error));
    expect(errors.map((error) => error.message)).toEqual([
      "S3 GET failed: 403 SignatureDoesNotMatch",
      "S3 PUT failed: 403 SignatureDoesNotMatch",
      "S3 GET failed: network error (ECONNRESET)",
    ]);
    for (const error of errors) {
      const text = `${error.stack} ${JSON.stringify(error)} ${String((error as { cause?: unknown }).cause)}`;
      expect(text).not.toContain(SECRET);
      expect(text).not.toContain("Signature=");
      expect(text).not.toContain(ENDPOINT);
    }
  });

  it("invalid keys are rejected before any request", async () => {
    const { store, sent } = scripted([]);
    for (const key of ["", "a//b", "../a", "a/./b", "a\nb"]) {
      await expect(store.get(key)).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(store.put(key, "x")).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(store.putIfAbsent(key, "x")).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(store.exists(key)).rejects.toBeInstanceOf(InvalidKeyError);
    }
    expect(sent).toEqual([]);
  });

  it("the signing region defaults to auto on R2 and us-east-1 elsewhere; an explicit region wins", async () => {
    const scope = async (options: Partial<S3BlobStoreOptions>) => {
      const { store, sent } = scripted([ok("x")], options);
      await store.get("a.json");
      return [
        sent[0]?.url.origin + (sent[0]?.url.pathname ?? ""),
        /Credential=[^/]+\/\d{8}\/([^/]+)\/s3\//.exec(sent[0]?.headers.get("authorization") ?? "")?.[1],
      ];
    };
    expect(await scope({ endpoint: "https://acc0123.r2.cloudflarestorage.com", region: undefined })).toEqual([
      `https://acc0123.r2.cloudflarestorage.com/${BUCKET}/a.json`,
      "auto",
    ]);
    expect(await scope({ endpoint: "https://s3.us-east-1.amazonaws.com/", region: undefined })).toEqual([
      `https://s3.us-east-1.amazonaws.com/${BUCKET}/a.json`,
      "us-east-1",
    ]);
    expect(await scope({ endpoint: "https://s3.eu-west-3.amazonaws.com", region: "eu-west-3" })).toEqual([
      `https://s3.eu-west-3.amazonaws.com/${BUCKET}/a.json`,
      "eu-west-3",
    ]);
  });
});
