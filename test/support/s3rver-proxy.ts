/**
 * A loopback HTTP proxy in front of s3rver that gives it the S3 semantics the
 * BlobStore contract relies on and s3rver 3.7 (on Node 20) lacks, the way AWS S3 and
 * R2 behave:
 *
 * - SigV4: every request must carry a valid `AWS4-HMAC-SHA256` Authorization header
 *   for a known key pair, scoped to the configured region and service `s3`, with a
 *   matching `X-Amz-Content-Sha256` (s3rver checks only that the access key id exists).
 *   Verified by an implementation written here from the AWS documentation, not by
 *   aws4fetch, so the adapter's signing is checked independently.
 * - `PUT` with `If-None-Match: *`: 412 PreconditionFailed when the object exists;
 *   conditional PUTs of one key are serialized (s3rver ignores the header and overwrites).
 * - Per-key isolation: requests on one object run one at a time, so a reader never
 *   sees a half-written object (s3rver writes objects in place).
 * - ListObjectsV2: keys in UTF-8 byte order, `start-after`, `continuation-token`,
 *   `max-keys` (s3rver lists in directory-walk order, and any truncated v2 page fails
 *   with 500 because its continuation tokens use DES, which OpenSSL 3 no longer offers).
 *   `maxKeysPerPage` returns fewer keys than asked, as S3 may, so clients must follow
 *   `NextContinuationToken`. At most 1000 keys under one prefix (one s3rver page).
 *
 * Every request is logged (method, raw path and query, headers, status) for assertions.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, request as httpRequest, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * Where the proxy sends the requests it has checked: s3rver's origin (e.g.
 * `http://127.0.0.1:4568`), or a handler that answers them in this process
 * (test/support/memory-s3.ts).
 */
export type Upstream = (
  method: string,
  pathAndQuery: string,
  headers: Record<string, string>,
  body: Buffer,
) => Promise<Reply>;

export interface S3ProxyOptions {
  upstream: string | Upstream;
  /** accessKeyId → secretAccessKey pairs the proxy accepts. */
  credentials: Record<string, string>;
  region: string;
  /** Cap on keys per ListObjectsV2 page (S3 "might contain fewer keys" than max-keys). */
  maxKeysPerPage?: number;
}

export interface LoggedRequest {
  method: string;
  /** The request path exactly as received (still percent-encoded). */
  path: string;
  /** The raw query string, without `?`. */
  query: string;
  /** Lower-cased header names. */
  headers: Record<string, string>;
  status: number;
  /** The S3 error `<Code>` of the response, if any. */
  code: string | undefined;
}

export interface S3Proxy {
  endpoint: string;
  requests: LoggedRequest[];
  close(): Promise<void>;
}

export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

const UPSTREAM_LIST_LIMIT = 1000;

export async function startS3Proxy(options: S3ProxyOptions): Promise<S3Proxy> {
  const forward = typeof options.upstream === "string" ? httpUpstream(new URL(options.upstream)) : options.upstream;
  const requests: LoggedRequest[] = [];
  const locks = new Map<string, Promise<void>>();

  /** Runs `task` after every earlier task on `name` has finished. */
  async function exclusive<T>(name: string, task: () => Promise<T>): Promise<T> {
    const previous = locks.get(name) ?? Promise.resolve();
    let release!: () => void;
    const current = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => current);
    locks.set(name, tail);
    await previous;
    try {
      return await task();
    } finally {
      release();
      if (locks.get(name) === tail) locks.delete(name);
    }
  }

  async function handle(req: IncomingMessage, body: Buffer): Promise<Reply> {
    const method = req.method ?? "GET";
    const rawUrl = req.url ?? "/";
    const queryAt = rawUrl.indexOf("?");
    const path = queryAt < 0 ? rawUrl : rawUrl.slice(0, queryAt);
    const query = queryAt < 0 ? "" : rawUrl.slice(queryAt + 1);
    const headers = flatHeaders(req);

    const denied = verifySigV4(method, path, query, headers, body, options);
    if (denied) return denied;

    // s3rver is reached anonymously (it allows that); the proxy has already authenticated.
    const upstreamHeaders: Record<string, string> = { ...headers };
    for (const name of ["authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"]) {
      delete upstreamHeaders[name];
    }

    const segments = path.split("/").slice(1);
    const bucket = decodeURIComponent(segments[0] ?? "");
    const key = segments.slice(1).map(decodeURIComponent).join("/");
    if (bucket === "") return forward(method, rawUrl, upstreamHeaders, body);
    if (key === "") {
      const params = new URLSearchParams(query);
      if (method === "GET" && params.get("list-type") === "2") return listV2(bucket, params);
      return forward(method, rawUrl, upstreamHeaders, body);
    }

    return exclusive(`${bucket}/${key}`, async () => {
      const ifNoneMatch = headers["if-none-match"];
      if (method === "PUT" && ifNoneMatch !== undefined) {
        if (ifNoneMatch !== "*") return s3Error(501, "NotImplemented", "Only If-None-Match: * is supported on PUT");
        delete upstreamHeaders["if-none-match"];
        const head = await forward("HEAD", path, {}, Buffer.alloc(0));
        if (head.status === 200) {
          return s3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
        }
      }
      return forward(method, rawUrl, upstreamHeaders, body);
    });
  }

  async function listV2(bucket: string, params: URLSearchParams): Promise<Reply> {
    if (params.has("delimiter") || params.has("encoding-type")) {
      return s3Error(501, "NotImplemented", "delimiter and encoding-type are not supported by this proxy");
    }
    const prefix = params.get("prefix") ?? "";
    const maxKeysParam = params.get("max-keys") ?? "1000";
    if (!/^\d+$/.test(maxKeysParam)) {
      return s3Error(400, "InvalidArgument", "Provided max-keys not an integer or within integer range");
    }
    const maxKeys = Math.min(Number(maxKeysParam), 1000, options.maxKeysPerPage ?? 1000);
    const token = params.get("continuation-token");
    let after = params.get("start-after") ?? "";
    if (token !== null) {
      if (!/^[A-Za-z0-9_-]*$/.test(token)) {
        return s3Error(400, "InvalidArgument", "The continuation token provided is incorrect");
      }
      after = Buffer.from(token, "base64url").toString("utf8");
    }

    // List type 1, one page: s3rver's v2 continuation tokens fail on Node 20.
    const upstreamQuery = new URLSearchParams({ prefix, "max-keys": String(UPSTREAM_LIST_LIMIT) });
    const listing = await forward(
      "GET",
      `/${encodeURIComponent(bucket)}?${upstreamQuery}`,
      {},
      Buffer.alloc(0),
    );
    if (listing.status !== 200) return listing;
    const xml = listing.body.toString("utf8");
    if (/<IsTruncated>true<\/IsTruncated>/.test(xml)) {
      return s3Error(500, "InternalError", `this test proxy lists at most ${UPSTREAM_LIST_LIMIT} keys per prefix`);
    }

    const afterBytes = Buffer.from(after, "utf8");
    const entries = [...xml.matchAll(/<Contents>[\s\S]*?<\/Contents>/g)]
      .map((match) => {
        const block = match[0];
        const key = unescapeXml(/<Key>([^<]*)<\/Key>/.exec(block)?.[1] ?? "");
        return { block, key, bytes: Buffer.from(key, "utf8") };
      })
      .filter((entry) => entry.key.startsWith(prefix) && Buffer.compare(entry.bytes, afterBytes) > 0)
      .sort((a, b) => Buffer.compare(a.bytes, b.bytes));
    const page = entries.slice(0, maxKeys);
    const truncated = entries.length > page.length;
    const last = page[page.length - 1];
    const parts = [
      '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
      `<Name>${escapeXml(bucket)}</Name><Prefix>${escapeXml(prefix)}</Prefix>`,
      token !== null
        ? `<ContinuationToken>${token}</ContinuationToken>`
        : params.has("start-after")
        ? `<StartAfter>${escapeXml(after)}</StartAfter>`
        : "",
      `<KeyCount>${page.length}</KeyCount><MaxKeys>${maxKeysParam}</MaxKeys><IsTruncated>${truncated}</IsTruncated>`,
      truncated && last
        ? `<NextContinuationToken>${Buffer.from(last.key, "utf8").toString("base64url")}</NextContinuationToken>`
        : "",
      ...page.map((entry) => entry.block),
      "</ListBucketResult>",
    ];
    return { status: 200, headers: { "content-type": "application/xml" }, body: Buffer.from(parts.join(""), "utf8") };
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      handle(req, body)
        .catch((error: unknown) =>
          s3Error(500, "InternalError", error instanceof Error ? error.message : String(error))
        )
        .then((reply) => {
          const rawUrl = req.url ?? "/";
          const queryAt = rawUrl.indexOf("?");
          requests.push({
            method: req.method ?? "GET",
            path: queryAt < 0 ? rawUrl : rawUrl.slice(0, queryAt),
            query: queryAt < 0 ? "" : rawUrl.slice(queryAt + 1),
            headers: flatHeaders(req),
            status: reply.status,
            code: /<Code>([^<]*)<\/Code>/.exec(reply.body.toString("utf8"))?.[1],
          });
          // A HEAD reply keeps the object's Content-Length, as S3 sends it.
          const length = req.method === "HEAD" ? (reply.headers["content-length"] ?? "0") : String(reply.body.length);
          res.writeHead(reply.status, { ...reply.headers, "content-length": length });
          res.end(req.method === "HEAD" ? undefined : reply.body);
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** s3rver at `origin`: each request sent on as it came (its Host made the origin's), its answer read whole. */
function httpUpstream(origin: URL): Upstream {
  return (method, pathAndQuery, headers, body) =>
    new Promise((resolve, reject) => {
      const outgoing = httpRequest(
        {
          hostname: origin.hostname,
          port: origin.port,
          method,
          path: pathAndQuery,
          headers: { ...headers, host: origin.host, "content-length": String(body.length) },
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () => {
            const replyHeaders: Record<string, string> = {};
            for (const [name, value] of Object.entries(response.headers)) {
              if (
                typeof value === "string" && !["connection", "keep-alive", "transfer-encoding", "date"].includes(name)
              ) replyHeaders[name] = value;
            }
            resolve({ status: response.statusCode ?? 502, headers: replyHeaders, body: Buffer.concat(chunks) });
          });
          response.on("error", reject);
        },
      );
      outgoing.on("error", reject);
      outgoing.end(method === "GET" || method === "HEAD" ? undefined : body);
    });
}

function flatHeaders(req: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(",") : value;
  }
  return headers;
}

export function s3Error(status: number, code: string, message: string, extra: Record<string, string> = {}): Reply {
  const fields = Object.entries(extra).map(([name, value]) => `<${name}>${escapeXml(value)}</${name}>`).join("");
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${
    escapeXml(message)
  }</Message>${fields}<RequestId>s3rver-proxy</RequestId></Error>`;
  return { status, headers: { "content-type": "application/xml" }, body: Buffer.from(xml, "utf8") };
}

/** RFC 3986 percent-encoding of everything but the unreserved characters, as SigV4 requires. */
function uriEncode(value: string): string {
  return [...Buffer.from(value, "utf8")]
    .map((byte) => {
      const char = String.fromCharCode(byte);
      return /[A-Za-z0-9\-._~]/.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
    })
    .join("");
}

function decodeQueryComponent(value: string): string {
  return decodeURIComponent(value.replace(/\+/g, " "));
}

const sha256Hex = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
const hmac = (key: string | Buffer, data: string) => createHmac("sha256", key).update(data).digest();

/**
 * Checks an `AWS4-HMAC-SHA256` Authorization header the way S3 does, from the request
 * as received: the server decodes the path and query and re-encodes them canonically.
 * Returns an S3 error reply, or undefined when the request is authentic.
 */
function verifySigV4(
  method: string,
  path: string,
  query: string,
  headers: Record<string, string>,
  body: Buffer,
  options: S3ProxyOptions,
): Reply | undefined {
  const authorization = headers.authorization;
  if (authorization === undefined) return s3Error(403, "AccessDenied", "Access Denied");
  const match =
    /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/
      .exec(authorization);
  if (!match) return s3Error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed");
  const [, accessKeyId, date, region, service, signedHeaderList, signature] = match as unknown as string[];
  const secret = options.credentials[accessKeyId as string];
  if (secret === undefined) {
    return s3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.");
  }
  const amzDate = headers["x-amz-date"];
  if (amzDate === undefined || !amzDate.startsWith(date as string)) {
    return s3Error(403, "AccessDenied", "X-Amz-Date is missing or does not match the credential scope");
  }
  if (region !== options.region || service !== "s3") {
    return s3Error(
      400,
      "AuthorizationHeaderMalformed",
      `the region '${region}' is wrong; expecting '${options.region}'`,
    );
  }
  const signedHeaders = (signedHeaderList as string).split(";");
  const unsigned = Object.keys(headers).filter((name) =>
    (name === "host" || name.startsWith("x-amz-")) && !signedHeaders.includes(name)
  );
  if (unsigned.length > 0) {
    return s3Error(
      403,
      "AccessDenied",
      `There were headers present in the request which were not signed: ${unsigned.join(", ")}`,
    );
  }
  const payloadHash = headers["x-amz-content-sha256"];
  if (payloadHash === undefined) {
    return s3Error(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256");
  }
  if (payloadHash !== "UNSIGNED-PAYLOAD" && payloadHash !== sha256Hex(body)) {
    return s3Error(
      400,
      "XAmzContentSHA256Mismatch",
      "The provided 'x-amz-content-sha256' header does not match what was computed.",
    );
  }

  const canonicalUri = path.split("/").map((segment) => uriEncode(decodeURIComponent(segment))).join("/");
  const canonicalQuery = query
    .split("&")
    .filter(Boolean)
    .map((pair) => {
      const eq = pair.indexOf("=");
      const name = decodeQueryComponent(eq < 0 ? pair : pair.slice(0, eq));
      const value = eq < 0 ? "" : decodeQueryComponent(pair.slice(eq + 1));
      return [uriEncode(name), uriEncode(value)] as const;
    })
    .sort(([n1, v1], [n2, v2]) => (n1 < n2 ? -1 : n1 > n2 ? 1 : v1 < v2 ? -1 : v1 > v2 ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join("&");
  const canonicalHeaders = signedHeaders.map((name) => `${name}:${(headers[name] ?? "").trim().replace(/\s+/g, " ")}\n`)
    .join("");
  const canonicalRequest = [method, canonicalUri, canonicalQuery, canonicalHeaders, signedHeaderList, payloadHash].join(
    "\n",
  );
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256Hex(canonicalRequest)].join("\n");
  const signingKey = hmac(
    hmac(hmac(hmac(`AWS4${secret}`, date as string), region as string), service as string),
    "aws4_request",
  );
  const expected = hmac(signingKey, stringToSign);
  if (!timingSafeEqual(expected, Buffer.from(signature as string, "hex"))) {
    // Real S3 echoes these (and the canonical request) back; a client must not pass them on.
    return s3Error(
      403,
      "SignatureDoesNotMatch",
      "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
      {
        AWSAccessKeyId: accessKeyId as string,
        StringToSign: stringToSign,
        SignatureProvided: signature as string,
        CanonicalRequest: canonicalRequest,
      },
    );
  }
  return undefined;
}

export function escapeXml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[c] as string,
  );
}

function unescapeXml(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#\d+|amp|lt|gt|quot|apos);/g, (_, entity: string) => {
    if (entity.startsWith("#x")) return String.fromCodePoint(Number.parseInt(entity.slice(2), 16));
    if (entity.startsWith("#")) return String.fromCodePoint(Number.parseInt(entity.slice(1), 10));
    return ({ amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" })[entity] as string;
  });
}
