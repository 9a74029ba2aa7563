/**
 * s3rver (a fake S3 server on the local filesystem) on an ephemeral loopback port,
 * behind `startS3Proxy` (test/support/s3rver-proxy.ts), which adds SigV4 checks,
 * `If-None-Match: *` on PUT, per-key isolation and an S3-ordered ListObjectsV2.
 *
 * One s3rver fix is made inside it rather than in the proxy: its filesystem store
 * answers a PUT once the body has passed through a Transform, before the file write
 * has finished, so a GET right after the 200 could read a short file. `putObject` is
 * replaced by one that writes a temp file, renames it into place, then answers.
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { AwsClient } from "aws4fetch";
import S3rver from "s3rver";
import { S3BlobStore, type S3BlobStoreOptions } from "../../src/blob/s3.ts";
import { memoryUpstream } from "./memory-s3.ts";
import { type S3Proxy, startS3Proxy, type Upstream } from "./s3rver-proxy.ts";

export const S3_REGION = "us-east-1";
export const S3_ACCESS_KEY_ID = "AKIALOCALTESTKEY0001";
export const S3_SECRET_ACCESS_KEY = "local-test-secret-for-s3rver-proxy-0001";

export interface S3rverHarness {
  /** The proxy's origin: what an S3 client is pointed at. */
  endpoint: string;
  proxy: S3Proxy;
  /** Creates a bucket with a fresh name and returns the name. */
  createBucket(): Promise<string>;
  /** An S3BlobStore on `bucket` through the proxy with the accepted credentials; `overrides` replace any option. */
  store(bucket: string, overrides?: Partial<S3BlobStoreOptions>): S3BlobStore;
  close(): Promise<void>;
}

interface S3rverObject {
  bucket: string;
  key: string;
  content: AsyncIterable<Buffer> | Buffer;
  metadata: Record<string, string>;
}

interface S3rverFilesystemStore {
  getResourcePath(bucket: string, key: string, resource: string): string;
  putMetadata(bucket: string, key: string, metadata: Record<string, string>, md5: string): Promise<void>;
  putObject(object: S3rverObject): Promise<{ size: number; md5: string }>;
}

let bucketCounter = 0;

/** `parent`: the folder its files go under (default: the OS temp folder). */
export async function startS3rver(
  options: { maxKeysPerPage?: number; parent?: string } = {},
): Promise<S3rverHarness> {
  const directory = await mkdtemp(join(options.parent ?? tmpdir(), "s3rver-"));
  const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory, vhostBuckets: false });
  makePutsDurableBeforeReply((server as unknown as { store: S3rverFilesystemStore }).store);
  const address = await server.run();
  const proxy = await proxyOver(`http://127.0.0.1:${address.port}`, options);
  return harness(proxy, async () => {
    await server.close();
    await rm(directory, { recursive: true, force: true });
  });
}

/**
 * The same proxy with its objects in this process's memory instead of s3rver
 * (test/support/memory-s3.ts): what the edge bench measures against, so a put costs the
 * distance it injects and the proxy's checks, not s3rver's files and second HTTP hop.
 */
export async function startMemoryS3(options: { maxKeysPerPage?: number } = {}): Promise<S3rverHarness> {
  const proxy = await proxyOver(memoryUpstream(), options);
  return harness(proxy, async () => {});
}

/** The S3-semantics proxy over `upstream`, taking the harness's key pair in its region. */
function proxyOver(upstream: string | Upstream, options: { maxKeysPerPage?: number }): Promise<S3Proxy> {
  return startS3Proxy({
    upstream,
    credentials: { [S3_ACCESS_KEY_ID]: S3_SECRET_ACCESS_KEY },
    region: S3_REGION,
    ...(options.maxKeysPerPage === undefined ? {} : { maxKeysPerPage: options.maxKeysPerPage }),
  });
}

function harness(proxy: S3Proxy, closeBackend: () => Promise<void>): S3rverHarness {
  const admin = new AwsClient({
    accessKeyId: S3_ACCESS_KEY_ID,
    secretAccessKey: S3_SECRET_ACCESS_KEY,
    service: "s3",
    region: S3_REGION,
    retries: 0,
  });

  return {
    endpoint: proxy.endpoint,
    proxy,
    async createBucket() {
      const name = `bucket-${process.pid}-${++bucketCounter}-${randomUUID().slice(0, 8)}`;
      const response = await admin.fetch(`${proxy.endpoint}/${name}`, { method: "PUT" });
      if (response.status !== 200) {
        throw new Error(`creating bucket ${name}: ${response.status} ${await response.text()}`);
      }
      return name;
    },
    store(bucket, overrides = {}) {
      return new S3BlobStore({
        bucket,
        endpoint: proxy.endpoint,
        region: S3_REGION,
        accessKeyId: S3_ACCESS_KEY_ID,
        secretAccessKey: S3_SECRET_ACCESS_KEY,
        ...overrides,
      });
    },
    async close() {
      await proxy.close();
      await closeBackend();
    },
  };
}

function makePutsDurableBeforeReply(store: S3rverFilesystemStore): void {
  store.putObject = async (object) => {
    const objectPath = store.getResourcePath(object.bucket, object.key, "object");
    await mkdir(dirname(objectPath), { recursive: true });
    let content: Buffer;
    if (Buffer.isBuffer(object.content)) {
      content = object.content;
    } else {
      const chunks: Buffer[] = [];
      for await (const chunk of object.content) chunks.push(chunk);
      content = Buffer.concat(chunks);
    }
    const md5 = createHash("md5").update(content).digest("hex");
    // Not named `*._S3rver_object`, so s3rver's listing never shows it.
    const temp = `${objectPath}.${randomUUID()}.partial`;
    await writeFile(temp, content);
    await rename(temp, objectPath);
    await store.putMetadata(object.bucket, object.key, object.metadata, md5);
    return { size: content.length, md5 };
  };
}
