import { S3BlobStore } from "../blob/s3.ts";
import { type BlobStoreConfig, ConfigError, type Env } from "./config.ts";

/** An S3BlobStore from `BLOB_STORE=s3://bucket?endpoint=..&region=..` and the AWS_* keys. */
export function s3FromConfig(blob: Extract<BlobStoreConfig, { kind: "s3" }>, env: Env): S3BlobStore {
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) {
    throw new ConfigError("BLOB_STORE=s3:// needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
  }
  // Without an endpoint, AWS S3 in the given region (path-style URLs work there too).
  const endpoint = blob.endpoint ?? `https://s3.${blob.region ?? "us-east-1"}.amazonaws.com`;
  return new S3BlobStore({
    bucket: blob.bucket,
    endpoint,
    // Unset: the adapter signs for `auto` on R2 endpoints and `us-east-1` elsewhere.
    ...(blob.region ? { region: blob.region } : {}),
    accessKeyId,
    secretAccessKey,
  });
}
