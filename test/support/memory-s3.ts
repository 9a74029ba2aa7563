/**
 * An in-memory stand-in for s3rver behind `startS3Proxy` (test/support/s3rver-proxy.ts):
 * the proxy keeps every S3 semantic it adds (SigV4 checks, `If-None-Match: *`, per-key
 * isolation, ordered ListObjectsV2 pages) and hands the plain object requests it would
 * have sent s3rver to this instead. Objects live in a Map, so a request costs no HTTP hop
 * to a second server and no file.
 *
 * For the edge bench: it measures the Worker with its stores a set distance away, and
 * s3rver's own handling (Koa, a temp file, a rename and a metadata file per PUT; a HEAD
 * and a PUT per conditional PUT) added ~5 ms to every put on this machine. The S3 adapter's
 * tests keep s3rver, an implementation not written here; the blob store contract runs
 * against this one too (test/blob/s3.test.ts), so both answer the adapter alike.
 *
 * It answers what the proxy sends: bucket PUT, object PUT, GET, HEAD and DELETE, and a
 * list-type-1 listing of a prefix (the proxy orders and pages it).
 */
import { createHash } from "node:crypto";
import { escapeXml, type Reply, s3Error, type Upstream } from "./s3rver-proxy.ts";

interface StoredObject {
  body: Buffer;
  etag: string;
  lastModified: Date;
  contentType: string;
}

export function memoryUpstream(): Upstream {
  const buckets = new Map<string, Map<string, StoredObject>>();
  return (method, pathAndQuery, headers, body) => Promise.resolve(answer(buckets, method, pathAndQuery, headers, body));
}

function answer(
  buckets: Map<string, Map<string, StoredObject>>,
  method: string,
  pathAndQuery: string,
  headers: Record<string, string>,
  body: Buffer,
): Reply {
  const queryAt = pathAndQuery.indexOf("?");
  const path = queryAt < 0 ? pathAndQuery : pathAndQuery.slice(0, queryAt);
  const params = new URLSearchParams(queryAt < 0 ? "" : pathAndQuery.slice(queryAt + 1));
  const segments = path.split("/").slice(1);
  const bucketName = decodeURIComponent(segments[0] ?? "");
  const key = segments.slice(1).map(decodeURIComponent).join("/");
  if (bucketName === "") return s3Error(501, "NotImplemented", "ListBuckets");

  if (key === "") {
    if (method === "PUT") {
      if (!buckets.has(bucketName)) buckets.set(bucketName, new Map());
      return { status: 200, headers: {}, body: Buffer.alloc(0) };
    }
    const bucket = buckets.get(bucketName);
    if (!bucket) return noSuchBucket(bucketName);
    if (method === "GET") return listV1(bucketName, bucket, params.get("prefix") ?? "");
    return s3Error(501, "NotImplemented", `${method} on a bucket`);
  }

  const bucket = buckets.get(bucketName);
  if (!bucket) return noSuchBucket(bucketName);
  const object = bucket.get(key);
  switch (method) {
    case "PUT": {
      const etag = `"${createHash("md5").update(body).digest("hex")}"`;
      bucket.set(key, {
        body,
        etag,
        lastModified: new Date(),
        contentType: headers["content-type"] ?? "binary/octet-stream",
      });
      return { status: 200, headers: { etag }, body: Buffer.alloc(0) };
    }
    case "GET":
    case "HEAD": {
      if (!object) {
        return method === "HEAD"
          ? { status: 404, headers: {}, body: Buffer.alloc(0) }
          : s3Error(404, "NoSuchKey", "The specified key does not exist.");
      }
      return {
        status: 200,
        headers: {
          "content-type": object.contentType,
          "content-length": String(object.body.length),
          etag: object.etag,
          "last-modified": object.lastModified.toUTCString(),
        },
        body: method === "HEAD" ? Buffer.alloc(0) : object.body,
      };
    }
    case "DELETE":
      bucket.delete(key);
      return { status: 204, headers: {}, body: Buffer.alloc(0) };
    default:
      return s3Error(501, "NotImplemented", `${method} on an object`);
  }
}

/** Every key under `prefix`, unordered and on one page: the proxy sorts and pages them. */
function listV1(bucketName: string, bucket: Map<string, StoredObject>, prefix: string): Reply {
  const contents: string[] = [];
  for (const [key, object] of bucket) {
    if (!key.startsWith(prefix)) continue;
    contents.push(
      `<Contents><Key>${escapeXml(key)}</Key><LastModified>${object.lastModified.toISOString()}</LastModified>` +
        `<ETag>${escapeXml(object.etag)}</ETag><Size>${object.body.length}</Size>` +
        "<StorageClass>STANDARD</StorageClass></Contents>",
    );
  }
  const xml = '<?xml version="1.0" encoding="UTF-8"?>\n' +
    '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
    `<Name>${escapeXml(bucketName)}</Name><Prefix>${escapeXml(prefix)}</Prefix>` +
    `<MaxKeys>${contents.length}</MaxKeys><IsTruncated>false</IsTruncated>${contents.join("")}</ListBucketResult>`;
  return { status: 200, headers: { "content-type": "application/xml" }, body: Buffer.from(xml, "utf8") };
}

function noSuchBucket(name: string): Reply {
  return s3Error(404, "NoSuchBucket", `The specified bucket does not exist: ${name}`);
}
