import { startS3rver } from "../test/support/s3rver.ts";
import { startFaultProxy } from "../test/support/fault-proxy.ts";
import { S3BlobStore } from "../src/blob/s3.ts";
import { S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY } from "../test/support/s3rver.ts";
const s3 = await startS3rver();
const proxy = await startFaultProxy(s3.endpoint, { delayMs: 20 });
const bucket = await s3.createBucket();
const store = new S3BlobStore({ bucket, endpoint: proxy.endpoint, region: S3_REGION, accessKeyId: S3_ACCESS_KEY_ID, secretAccessKey: S3_SECRET_ACCESS_KEY });
const body = "x".repeat(8000);
for (const conc of [1, 4]) {
  const t = performance.now(); let n = 0;
  await Promise.all(Array.from({ length: conc }, async (_, w) => { for (let i = 0; i < 20; i++) { await store.putIfAbsent(`k/${conc}-${w}-${i}`, body); n++; } }));
  console.log("conc", conc, "per put ms", ((performance.now() - t) / (n / conc)).toFixed(1));
}
const t = performance.now(); for (let i = 0; i < 20; i++) await store.get(`k/1-0-${i}`); console.log("get ms", ((performance.now() - t) / 20).toFixed(1));
await proxy.close(); await s3.close(); process.exit(0);
