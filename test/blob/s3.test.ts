/**
 * S3BlobStore against a real S3 protocol peer: s3rver behind test/support/s3rver-proxy.ts
 * (SigV4 verification, `If-None-Match: *`, per-key isolation, ordered ListObjectsV2 with
 * short pages). Every test gets a fresh bucket.
 */
import { createHash } from "node:crypto";
import { createServer } from "node:net";
import { inspect } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LoggedRequest } from "../support/s3rver-proxy.ts";
import {
  S3_ACCESS_KEY_ID,
  S3_REGION,
  S3_SECRET_ACCESS_KEY,
  type S3rverHarness,
  startMemoryS3,
  startS3rver,
} from "../support/s3rver.ts";
import { useCluster } from "../support/cluster.ts";
import { describeBlobStoreContract } from "./contract.ts";

/** The proxy answers at most this many keys per list page, so every longer listing follows continuation tokens. */
const PAGE = 3;

let s3: S3rverHarness;
let memoryS3: S3rverHarness;

beforeAll(async () => {
  s3 = await startS3rver({ maxKeysPerPage: PAGE });
  memoryS3 = await startMemoryS3({ maxKeysPerPage: PAGE });
});

afterAll(async () => {
  await s3?.close();
  await memoryS3?.close();
});

describeBlobStoreContract(
  "s3 (s3rver behind the S3-semantics proxy)",
  async () => ({ store: s3.store(await s3.createBucket()) }),
);

// The edge bench's S3 server (bench/load/stores.ts): the proxy over objects in memory
// must answer the adapter as it does over s3rver.
describeBlobStoreContract(
  "s3 (objects in memory behind the S3-semantics proxy)",
  async () => ({ store: memoryS3.store(await memoryS3.createBucket()) }),
);

/** The proxy's log of requests to `bucket`. */
function requestsTo(bucket: string): LoggedRequest[] {
  return s3.proxy.requests.filter((request) => request.path === `/${bucket}` || request.path.startsWith(`/${bucket}/`));
}

function signedHeaders(request: LoggedRequest): string[] {
  return /SignedHeaders=([^,]+)/.exec(request.headers.authorization ?? "")?.[1]?.split(";") ?? [];
}

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("S3BlobStore over s3rver", () => {
  it('putIfAbsent sends a signed If-None-Match: *; the 412 that follows becomes "exists" and the first body stays', async () => {
    const bucket = await s3.createBucket();
    const store = s3.store(bucket);
    const key = "tenants/t/threads/a/patches/000000000001.json";
    expect(await store.putIfAbsent(key, '{"seq":1,"by":"first"}')).toBe("created");
    expect(await store.putIfAbsent(key, '{"seq":1,"by":"second"}')).toBe("exists");
    expect(await store.get(key)).toBe('{"seq":1,"by":"first"}');

    const puts = requestsTo(bucket).filter((request) =>
      request.method === "PUT" && request.path === `/${bucket}/${key}`
    );
    expect(puts.map((request) => request.headers["if-none-match"])).toEqual(["*", "*"]);
    expect(puts.map((request) => request.status)).toEqual([200, 412]);
    expect(puts[1]?.code).toBe("PreconditionFailed");
    for (const request of puts) expect(signedHeaders(request)).toContain("if-none-match");

    // A plain put is unconditional.
    await store.put("tenants/t/threads/a/snapshots/000000000001.json", "{}");
    const snapshotPut = requestsTo(bucket).find((request) =>
      request.method === "PUT" && request.path.includes("/snapshots/")
    );
    expect(snapshotPut?.status).toBe(200);
    expect(snapshotPut?.headers["if-none-match"]).toBeUndefined();
  });

  it("every request carries a SigV4 Authorization the proxy verified, with the payload hash signed", async () => {
    const bucket = await s3.createBucket();
    const store = s3.store(bucket);
    const body = '{"x":"héllo 🚀"}';
    await store.put("a/put.json", body);
    expect(await store.putIfAbsent("a/pia (1).json", body)).toBe("created");
    expect(await store.get("a/put.json")).toBe(body);
    expect(await store.get("a/missing.json")).toBeNull();
    expect(await store.exists("a/pia (1).json")).toBe(true);
    expect(await store.list("a/", { startAfter: "a/", limit: 10 })).toEqual(["a/pia (1).json", "a/put.json"]);

    const requests = requestsTo(bucket).filter((request) => request.method !== "PUT" || request.path !== `/${bucket}`);
    expect(requests.map((request) => request.method).sort()).toEqual(["GET", "GET", "GET", "HEAD", "PUT", "PUT"]);
    const credential = new RegExp(
      `^AWS4-HMAC-SHA256 Credential=${S3_ACCESS_KEY_ID}/\\d{8}/${S3_REGION}/s3/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$`,
    );
    for (const request of requests) {
      expect(request.headers.authorization).toMatch(credential);
      expect(signedHeaders(request)).toEqual(expect.arrayContaining(["host", "x-amz-date", "x-amz-content-sha256"]));
      // Authentic: the proxy answers an unverifiable request with 400 or 403.
      expect([200, 404]).toContain(request.status);
    }
    for (const request of requests.filter((r) => r.method === "PUT")) {
      expect(request.headers["x-amz-content-sha256"]).toBe(createHash("sha256").update(body, "utf8").digest("hex"));
    }
  });

  it("a wrong secret is refused on every method (403 SignatureDoesNotMatch) and writes nothing", async () => {
    const bucket = await s3.createBucket();
    const wrong = s3.store(bucket, { secretAccessKey: "not-the-secret-the-server-knows" });
    await expect(wrong.put("w/a.json", "x")).rejects.toThrow("S3 PUT failed: 403 SignatureDoesNotMatch");
    await expect(wrong.putIfAbsent("w/b.json", "x")).rejects.toThrow("S3 PUT failed: 403 SignatureDoesNotMatch");
    await expect(wrong.get("w/a.json")).rejects.toThrow("S3 GET failed: 403 SignatureDoesNotMatch");
    await expect(wrong.exists("w/a.json")).rejects.toThrow("S3 HEAD failed: 403");
    await expect(wrong.list("w/")).rejects.toThrow("S3 LIST failed: 403 SignatureDoesNotMatch");
    expect(await s3.store(bucket).list("")).toEqual([]);
  });

  it("errors name the status and S3 code only: never the secret, the signature or the request", async () => {
    const secret = "FAKE-SECRET-wJalrXUtnFEMI-K7MDENG-bPxRfiCY-4242";
    const bucket = await s3.createBucket();
    const failures: unknown[] = [];
    const capture = (promise: Promise<unknown>) =>
      promise.then(() => failures.push(undefined), (error: unknown) => failures.push(error));

    // The proxy's SignatureDoesNotMatch body echoes the string to sign, the canonical request and the signature, as S3's does.
    const wrongSecret = s3.store(bucket, { secretAccessKey: secret });
    await capture(wrongSecret.get("e/a.json"));
    await capture(wrongSecret.putIfAbsent("e/a.json", "body"));
    await capture(s3.store(bucket, { accessKeyId: "AKIAUNKNOWNKEY000000", secretAccessKey: secret }).list("e/"));
    const offline = s3.store(bucket, { endpoint: `http://127.0.0.1:${await closedPort()}`, secretAccessKey: secret });
    await capture(offline.get("e/a.json"));

    expect(failures.map((error) => (error as Error).message)).toEqual([
      "S3 GET failed: 403 SignatureDoesNotMatch",
      "S3 PUT failed: 403 SignatureDoesNotMatch",
      "S3 LIST failed: 403 InvalidAccessKeyId",
      "S3 GET failed: network error (ECONNREFUSED)",
    ]);
    const echoed = requestsTo(bucket).find((request) => request.code === "SignatureDoesNotMatch");
    const signature = /Signature=([0-9a-f]{64})/.exec(echoed?.headers.authorization ?? "")?.[1];
    expect(signature).toMatch(/^[0-9a-f]{64}$/);
    for (const error of failures) {
      const text = `${inspect(error, { depth: 10 })} ${JSON.stringify(error)} ${(error as Error).stack}`;
      expect(text).not.toContain(secret);
      expect(text).not.toContain(signature);
      expect(text).not.toContain("AWS4-HMAC-SHA256");
      expect(text).not.toContain("127.0.0.1");
      expect(text).not.toContain(bucket);
    }
  });

  it("keys that need URL or XML escaping roundtrip, and list in UTF-8 byte order", async () => {
    const store = s3.store(await s3.createBucket());
    // Hand-sorted by UTF-8 bytes: "i" < "s" (semi < space) < "é" (C3) < "～" (EF) < "😀" (F0).
    // UTF-16 code units would put "😀" (D83D) before "～" (FF5E).
    const keys = [
      'q/it\'s (a) ~test & <x> "y" = 100% + more!*.json',
      "q/semi;colon,comma@at$dollar=eq`tick.json",
      "q/space here/and#hash?query.json",
      "q/é/日本語.json",
      "q/\uFF5E-fullwidth-tilde.json",
      "q/\u{1F600}-emoji.json",
    ];
    for (const [i, key] of [...keys].reverse().entries()) {
      expect(await store.putIfAbsent(key, `body ${i}: ${key}`)).toBe("created");
    }
    for (const [i, key] of [...keys].reverse().entries()) {
      expect(await store.get(key)).toBe(`body ${i}: ${key}`);
      expect(await store.exists(key)).toBe(true);
      expect(await store.putIfAbsent(key, "again")).toBe("exists");
    }
    expect(await store.list("q/")).toEqual(keys);
    expect(await store.list("q/", { startAfter: "q/\uFF5E-fullwidth-tilde.json" })).toEqual(["q/\u{1F600}-emoji.json"]);
    expect(await store.list("q/s")).toEqual(keys.slice(1, 3));
    expect(await store.exists('q/it\'s (a) ~test & <x> "y" = 100% + more!.json')).toBe(false);
  });

  it("list follows NextContinuationToken across short pages and asks only for the keys it still needs", async () => {
    const bucket = await s3.createBucket();
    const store = s3.store(bucket);
    const keys = Array.from({ length: 7 }, (_, i) => `p/${String(i + 1).padStart(12, "0")}.json`);
    for (const key of keys) await store.put(key, key);

    const listQueries = () =>
      requestsTo(bucket)
        .filter((request) => request.method === "GET" && request.path === `/${bucket}`)
        .map((request) => new URLSearchParams(request.query));
    expect(await store.list("p/")).toEqual(keys);
    const full = listQueries();
    expect(full).toHaveLength(Math.ceil(keys.length / PAGE));
    expect(full.map((query) => query.has("continuation-token"))).toEqual([false, true, true]);

    expect(await store.list("p/", { startAfter: keys[0], limit: 5 })).toEqual(keys.slice(1, 6));
    const limited = listQueries().slice(full.length);
    expect(limited.map((query) => query.get("max-keys"))).toEqual(["5", "2"]);
    expect(limited.map((query) => query.get("start-after"))).toEqual([keys[0], null]);
    expect(limited.map((query) => query.get("prefix"))).toEqual(["p/", "p/"]);
  });

  it("a missing bucket is an error, not an empty store", async () => {
    const store = s3.store("no-such-bucket-for-this-test");
    await expect(store.get("a.json")).rejects.toThrow("S3 GET failed: 404 NoSuchBucket");
    await expect(store.list("")).rejects.toThrow("S3 LIST failed: 404 NoSuchBucket");
    await expect(store.put("a.json", "x")).rejects.toThrow("S3 PUT failed: 404 NoSuchBucket");
    await expect(store.putIfAbsent("a.json", "x")).rejects.toThrow("S3 PUT failed: 404 NoSuchBucket");
  });
});

describe("Node server with BLOB_STORE=s3://", () => {
  const cluster = useCluster();

  it("writes each commit to the bucket (one conditional PUT), and a server with an empty cache reads the thread back from it", async () => {
    const bucket = await s3.createBucket();
    const env = {
      BLOB_STORE: `s3://${bucket}?endpoint=${s3.endpoint}&region=${S3_REGION}`,
      AWS_ACCESS_KEY_ID: S3_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: S3_SECRET_ACCESS_KEY,
    };
    const threadId = "s3-thread-1";
    const first = await cluster.start({ ...env, DATA_DIR: cluster.tempDir("s3-node-a-") });
    let artifactId: string;
    try {
      const created = await fetch(`${first.url}/v1/threads/${threadId}/artifacts`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          artifactType: "plan",
          identityKey: "plan:main",
          payload: { steps: ["a", "b"], note: "héllo" },
        }),
      });
      expect(created.status).toBe(201);
      artifactId = ((await created.json()) as { artifact: { id: string } }).artifact.id;
      const read = await fetch(`${first.url}/v1/threads/${threadId}`);
      expect(read.status).toBe(200);
      const thread = ((await read.json()) as { thread: { artifacts: Array<{ id: string; payload: unknown }> } }).thread;
      expect(thread.artifacts.map((artifact) => [artifact.id, artifact.payload])).toEqual([[artifactId, {
        steps: ["a", "b"],
        note: "héllo",
      }]]);
    } finally {
      await first.stop();
    }

    const store = s3.store(bucket);
    const commitKey = `tenants/local/threads/${threadId}/commits/000000000001.json`;
    expect(await store.exists(commitKey)).toBe(true);
    const commit = JSON.parse((await store.get(commitKey)) as string) as {
      v: number;
      firstSeq: number;
      lastSeq: number;
      patches: { seq: number; op: string; artifact: { id: string; threadId: string } }[];
    };
    expect(commit).toMatchObject({
      v: 2,
      firstSeq: 1,
      lastSeq: 1,
      patches: [{ seq: 1, op: "add", artifact: { id: artifactId, threadId } }],
    });
    expect(await store.list(`tenants/local/threads/${threadId}/commits/`)).toEqual([commitKey]);
    const commitPuts = requestsTo(bucket).filter((request) =>
      request.method === "PUT" && request.path === `/${bucket}/${commitKey}`
    );
    expect(commitPuts).toHaveLength(1);
    expect(commitPuts[0]?.headers["if-none-match"]).toBe("*");
    expect(commitPuts[0]?.status).toBe(200);

    // A fresh DATA_DIR means an empty libSQL cache: the thread must come from the bucket.
    const second = await cluster.start({ ...env, DATA_DIR: cluster.tempDir("s3-node-b-") });
    try {
      const read = await fetch(`${second.url}/v1/threads/${threadId}`);
      expect(read.status).toBe(200);
      const thread = ((await read.json()) as {
        thread: { rolloutSeq: number; artifacts: Array<{ id: string; payload: unknown }> };
      }).thread;
      expect(thread.rolloutSeq).toBe(1);
      expect(thread.artifacts.map((artifact) => [artifact.id, artifact.payload])).toEqual([[artifactId, {
        steps: ["a", "b"],
        note: "héllo",
      }]]);
    } finally {
      await second.stop();
    }
  });

  it("refuses to start with BLOB_STORE=s3:// but no AWS keys", async () => {
    await expect(
      cluster.start({
        DATA_DIR: cluster.tempDir("s3-node-nokeys-"),
        BLOB_STORE: `s3://some-bucket?endpoint=${s3.endpoint}&region=${S3_REGION}`,
        AWS_ACCESS_KEY_ID: "",
        AWS_SECRET_ACCESS_KEY: "",
      }),
    ).rejects.toThrow(/configuration error: .*AWS_ACCESS_KEY_ID/);
  });
});
