/**
 * Which URLs a webhook may call (API.md "Webhooks", Safety): no request into the
 * deployment's own network (SSRF). Checked when a subscription is created or its URL
 * changed, and again by the delivery side before each attempt, since what a name
 * resolves to can change. Web-standard: DNS comes in through the `Resolver` port.
 *
 * - `https://` only; `http://` only with `allowHttpLoopback` (WEBHOOK_ALLOW_HTTP_LOOPBACK=1,
 *   development and tests) and a loopback host (127.0.0.0/8, ::1, `localhost`).
 * - No credentials in the URL (they would be sent to the receiver and shown in lists),
 *   at most 2048 characters.
 * - The host, as a literal address or every address its name resolves to (A and AAAA),
 *   must be globally reachable: private (10/8, 172.16/12, 192.168/16), shared (CGNAT,
 *   100.64/10), loopback (unless `allowHttpLoopback`), link-local (169.254/16, fe80::/10),
 *   unique-local (fc00::/7), unspecified, multicast, the IANA special-purpose blocks
 *   (documentation, benchmarking, 240/4, ...), anything in IPv6 outside global unicast
 *   (2000::/3), and the IPv4 addresses embedded in IPv4-mapped (::ffff:10.0.0.1), NAT64
 *   (64:ff9b::/96) and 6to4 (2002::/16) addresses are refused, and so are the cloud
 *   metadata endpoints (169.254.169.254, fd00:ec2::254, 168.63.129.16, 100.100.100.200)
 *   and names (`metadata.google.internal`, ...).
 * - Names that are local by definition (`localhost`, `*.localhost`, `*.local`,
 *   `*.internal`, `*.home.arpa`) and single-label names (resolved through search domains)
 *   are refused whatever they resolve to.
 *
 * Where there is no DNS API (Workers: `resolve` null) only literal addresses and names
 * are checked; there Cloudflare's fetch cannot reach private networks anyway.
 *
 * A check then a fetch leaves a window in which the name may resolve elsewhere (DNS
 * rebinding): the delivery side checks before each attempt and can connect to the
 * `addresses` an accepted check returns.
 */

/** A hostname's addresses (A and AAAA), as text; rejects when the name does not resolve. */
export type Resolver = (hostname: string) => Promise<string[]>;

export interface UrlPolicy {
  /** `WEBHOOK_ALLOW_HTTP_LOOPBACK=1`: `http://` to loopback hosts, and loopback addresses at all. */
  allowHttpLoopback: boolean;
  /** Null where the runtime has no DNS API (Workers): names are then not resolved. */
  resolve: Resolver | null;
  /** How long a resolution may take before the URL is refused (default 5 s). */
  resolveTimeoutMs?: number;
}

export type UrlRefusalCode =
  | "too_long"
  | "invalid"
  | "scheme"
  | "credentials"
  | "forbidden_host"
  | "forbidden_address"
  | "unresolvable";

export type UrlCheck =
  | {
    ok: true;
    /** The URL as the WHATWG parser normalizes it: what was checked, so what to store and call. */
    url: URL;
    /** What the name resolved to (the literal address, or null where nothing was resolved). */
    addresses: string[] | null;
  }
  | { ok: false; code: UrlRefusalCode; detail: string };

export const MAX_WEBHOOK_URL_LENGTH = 2048;
const DEFAULT_RESOLVE_TIMEOUT_MS = 5000;

/** What kind of address an IP is; anything but `public` is refused (`loopback` allowed with the flag). */
export type AddressKind =
  | "public"
  | "loopback"
  | "private"
  | "shared (CGNAT)"
  | "link-local"
  | "unique-local"
  | "unspecified"
  | "multicast"
  | "reserved"
  | "metadata";

/** Checks `input` against the policy; never throws (a resolver failure is a refusal). */
export async function checkWebhookUrl(input: string, policy: UrlPolicy): Promise<UrlCheck> {
  if (input.length > MAX_WEBHOOK_URL_LENGTH) {
    return refuse("too_long", `url must be at most ${MAX_WEBHOOK_URL_LENGTH} characters`);
  }
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return refuse("invalid", "url must be an absolute URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return refuse("scheme", `url must be https:// (not ${url.protocol})`);
  }
  if (url.username !== "" || url.password !== "") {
    return refuse("credentials", "url must not carry credentials (user:password@)");
  }
  const host = url.hostname.endsWith(".") ? url.hostname.slice(0, -1) : url.hostname;
  if (host === "") return refuse("invalid", "url must name a host");

  const literal = host.startsWith("[") ? host.slice(1, -1) : isIPv4(host) ? host : null;
  const loopbackName = host === "localhost" || host.endsWith(".localhost");
  if (url.protocol === "http:") {
    const loopbackHost = loopbackName || (literal !== null && classifyAddress(literal) === "loopback");
    if (!policy.allowHttpLoopback || !loopbackHost) {
      return refuse(
        "scheme",
        policy.allowHttpLoopback
          ? "url must be https:// (http:// is allowed to loopback hosts only)"
          : "url must be https://",
      );
    }
  }

  if (literal !== null) {
    const refusal = refuseAddress(classifyAddress(literal), policy, `url host ${host} is`);
    return refusal ?? { ok: true, url, addresses: [literal] };
  }

  if (loopbackName) {
    return policy.allowHttpLoopback
      ? { ok: true, url, addresses: null }
      : refuse("forbidden_host", `url host ${host} is a loopback name`);
  }
  const nameRefusal = refuseName(host);
  if (nameRefusal) return nameRefusal;
  if (!policy.resolve) return { ok: true, url, addresses: null };

  let addresses: string[];
  try {
    addresses = await withTimeout(policy.resolve(host), policy.resolveTimeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS);
  } catch {
    return refuse("unresolvable", `url host ${host} does not resolve`);
  }
  if (addresses.length === 0) return refuse("unresolvable", `url host ${host} does not resolve`);
  for (const address of addresses) {
    // The address itself stays out of the detail: it would tell a caller how internal names resolve.
    const refusal = refuseAddress(classifyAddress(address), policy, `url host ${host} resolves to`);
    if (refusal) return refusal;
  }
  return { ok: true, url, addresses };
}

function refuse(code: UrlRefusalCode, detail: string): UrlCheck {
  return { ok: false, code, detail };
}

function refuseAddress(kind: AddressKind | null, policy: UrlPolicy, what: string): UrlCheck | null {
  if (kind === "public" || (kind === "loopback" && policy.allowHttpLoopback)) return null;
  if (kind === null) return refuse("forbidden_address", `${what} not an IP address`);
  const article = kind === "unspecified" ? "an" : "a";
  return refuse(
    "forbidden_address",
    `${what} ${article} ${kind} address; webhooks may only call public addresses`,
  );
}

/** Cloud metadata services by name (GCP, AWS EC2, generic). */
const METADATA_NAMES = new Set([
  "metadata",
  "metadata.google.internal",
  "metadata.goog",
  "instance-data",
  "instance-data.ec2.internal",
]);
/** Suffixes that are local by definition (RFC 6762 mDNS, ICANN's private-use .internal, RFC 8375). */
const LOCAL_SUFFIXES = [".local", ".internal", ".home.arpa", ".localdomain"];

function refuseName(host: string): UrlCheck | null {
  if (METADATA_NAMES.has(host)) return refuse("forbidden_host", `url host ${host} is a metadata service`);
  if (!host.includes(".")) {
    return refuse("forbidden_host", `url host ${host} must be a fully qualified name`);
  }
  if (LOCAL_SUFFIXES.some((suffix) => host.endsWith(suffix)) || host === "home.arpa") {
    return refuse("forbidden_host", `url host ${host} is a local name`);
  }
  return null;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`resolution took longer than ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// ---------- addresses ----------

/** Metadata endpoints at addresses of their own (some are also link-local, CGNAT or ULA: named first). */
const METADATA_V4 = new Set(["169.254.169.254", "169.254.170.2", "168.63.129.16", "100.100.100.200"]);
const METADATA_V6 = [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254];

/** IPv4 blocks that are not globally reachable (IANA special-purpose registry), most specific first. */
const V4_BLOCKS: Array<[base: string, bits: number, kind: AddressKind]> = [
  ["0.0.0.0", 8, "unspecified"],
  ["10.0.0.0", 8, "private"],
  ["100.64.0.0", 10, "shared (CGNAT)"],
  ["127.0.0.0", 8, "loopback"],
  ["169.254.0.0", 16, "link-local"],
  ["172.16.0.0", 12, "private"],
  ["192.0.0.0", 24, "reserved"],
  ["192.0.2.0", 24, "reserved"],
  ["192.88.99.0", 24, "reserved"],
  ["192.168.0.0", 16, "private"],
  ["198.18.0.0", 15, "reserved"],
  ["198.51.100.0", 24, "reserved"],
  ["203.0.113.0", 24, "reserved"],
  ["224.0.0.0", 4, "multicast"],
  ["240.0.0.0", 4, "reserved"],
];
const V4_TABLE = V4_BLOCKS.map(([base, bits, kind]) => ({
  base: parseIPv4(base) as number,
  mask: bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0,
  kind,
}));

/** The kind of an IPv4 or IPv6 address in text (zone ids allowed), or null when it is neither. */
export function classifyAddress(address: string): AddressKind | null {
  const v4 = parseIPv4(address);
  if (v4 !== null) return classifyIPv4(v4);
  const v6 = parseIPv6(address);
  return v6 === null ? null : classifyIPv6(v6);
}

function classifyIPv4(address: number): AddressKind {
  if (METADATA_V4.has(formatIPv4(address))) return "metadata";
  for (const block of V4_TABLE) if (((address & block.mask) >>> 0) === block.base) return block.kind;
  return "public";
}

function classifyIPv6(g: number[]): AddressKind {
  const [g0 = 0, g1 = 0, g2 = 0, g3 = 0, g4 = 0, g5 = 0, g6 = 0, g7 = 0] = g;
  const embedded = ((g6 << 16) | g7) >>> 0;
  if (g.every((group, i) => group === METADATA_V6[i])) return "metadata";
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0) {
    // ::ffff:a.b.c.d reaches a.b.c.d: judged as that address.
    if (g5 === 0xffff) return classifyIPv4(embedded);
    if (g5 === 0 && g6 === 0 && g7 === 0) return "unspecified";
    if (g5 === 0 && g6 === 0 && g7 === 1) return "loopback";
    return "reserved";
  }
  // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address a gateway will reach.
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return classifyIPv4(embedded);
  if (g0 === 0x2002) return classifyIPv4(((g1 << 16) | g2) >>> 0);
  if ((g0 & 0xff00) === 0xff00) return "multicast";
  if ((g0 & 0xffc0) === 0xfe80) return "link-local";
  if ((g0 & 0xfe00) === 0xfc00) return "unique-local";
  // Everything else outside global unicast (site-local fec0::/10, discard 100::/64, ...).
  if ((g0 & 0xe000) !== 0x2000) return "reserved";
  // Teredo 2001::/32, benchmarking 2001:2::/48, documentation 2001:db8::/32 and 3fff::/20.
  if (g0 === 0x2001 && (g1 === 0 || g1 === 0xdb8 || (g1 === 2 && g2 === 0))) return "reserved";
  if (g0 === 0x3fff && g1 < 0x1000) return "reserved";
  return "public";
}

function isIPv4(text: string): boolean {
  return parseIPv4(text) !== null;
}

/** A dotted quad (no leading zeros, as resolvers and the URL parser write them) as a uint32, or null. */
function parseIPv4(text: string): number | null {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!match) return null;
  let value = 0;
  for (const part of match.slice(1)) {
    if ((part.length > 1 && part.startsWith("0")) || Number(part) > 255) return null;
    value = value * 256 + Number(part);
  }
  return value;
}

function formatIPv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join(".");
}

/** An IPv6 address (`::` compression, a dotted IPv4 tail, a `%zone`) as eight 16-bit groups, or null. */
function parseIPv6(input: string): number[] | null {
  let text = input;
  const zone = text.indexOf("%");
  if (zone >= 0) text = text.slice(0, zone);
  if (!/^[0-9A-Fa-f:.]+$/.test(text) || !text.includes(":")) return null;
  if (text.includes(".")) {
    const colon = text.lastIndexOf(":");
    const v4 = parseIPv4(text.slice(colon + 1));
    if (v4 === null) return null;
    text = `${text.slice(0, colon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groups = (part: string | undefined) => (part ? part.split(":") : []);
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const all = [...head, ...Array.from({ length: halves.length === 2 ? missing : 0 }, () => "0"), ...tail];
  const out: number[] = [];
  for (const group of all) {
    if (!/^[0-9A-Fa-f]{1,4}$/.test(group)) return null;
    out.push(parseInt(group, 16));
  }
  return out;
}
