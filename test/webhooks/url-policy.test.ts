/**
 * The webhook URL policy (API.md "Webhooks", Safety): https only, http to loopback only
 * with WEBHOOK_ALLOW_HTTP_LOOPBACK, no credentials, at most 2048 characters, and no host
 * whose literal address or any resolved address is not globally reachable. The resolver
 * is injected: no test asks real DNS.
 */
import { describe, expect, it } from "vitest";
import { checkWebhookUrl, classifyAddress, type Resolver, type UrlPolicy } from "../../src/webhooks/url-policy.ts";

/** A resolver from a table; unknown names do not resolve. Records every name it was asked. */
function tableResolver(table: Record<string, string[]>): Resolver & { asked: string[] } {
  const asked: string[] = [];
  const resolve = async (hostname: string) => {
    asked.push(hostname);
    const addresses = table[hostname];
    if (!addresses) throw Object.assign(new Error(`ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
    return addresses;
  };
  return Object.assign(resolve, { asked });
}

const DNS = tableResolver({
  "hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
  "loopback.example.com": ["127.0.0.1"],
  "private.example.com": ["10.1.2.3"],
  // One public address is not enough: every address must be.
  "mixed.example.com": ["93.184.215.14", "192.168.1.10"],
  "mixed6.example.com": ["2606:2800:21f:cb07:6820:80da:af6b:8b2c", "fd12:3456::1"],
  "mapped.example.com": ["::ffff:10.0.0.1"],
  "metadata.example.com": ["169.254.169.254"],
  "empty.example.com": [],
});

const strict: UrlPolicy = { allowHttpLoopback: false, resolve: DNS };
const dev: UrlPolicy = { allowHttpLoopback: true, resolve: DNS };

async function refusal(url: string, policy: UrlPolicy = strict) {
  const check = await checkWebhookUrl(url, policy);
  expect(check.ok, url).toBe(false);
  return check.ok ? null : { code: check.code, detail: check.detail };
}

describe("checkWebhookUrl", () => {
  it("accepts https to a public host, by name (every address public) or literal, and normalizes the URL", async () => {
    const byName = await checkWebhookUrl("https://Hooks.Example.com./in?x=1", strict);
    expect(byName).toMatchObject({ ok: true, addresses: ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"] });
    expect(byName.ok && byName.url.href).toBe("https://hooks.example.com./in?x=1");
    for (const url of ["https://93.184.215.14/hook", "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:8443/x"]) {
      expect((await checkWebhookUrl(url, strict)).ok, url).toBe(true);
    }
  });

  it("refuses the four addresses of the issue: 10.x, 169.254.169.254, [fd00::1], and a name resolving to 127.0.0.1", async () => {
    expect(await refusal("https://10.0.0.1/hook")).toMatchObject({ code: "forbidden_address" });
    expect((await refusal("https://10.0.0.1/hook"))?.detail).toMatch(/private address/);
    expect((await refusal("https://169.254.169.254/latest/meta-data/"))?.detail).toMatch(/metadata address/);
    expect((await refusal("https://[fd00::1]/hook"))?.detail).toMatch(/unique-local address/);
    const named = await refusal("https://loopback.example.com/hook");
    expect(named).toMatchObject({ code: "forbidden_address" });
    expect(named?.detail).toMatch(/resolves to a loopback address/);
    // The resolved address itself is never echoed (it would reveal how internal names resolve).
    expect(named?.detail).not.toContain("127.0.0.1");
  });

  it("refuses IPv4-mapped IPv6 of refused addresses, in every spelling the parser normalizes", async () => {
    for (
      const url of [
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:7f00:1]/",
        "https://[::ffff:10.0.0.1]/",
        "https://[0:0:0:0:0:ffff:a9fe:a9fe]/",
        "https://[64:ff9b::10.0.0.1]/",
        "https://[2002:c0a8:0101::1]/",
        "https://mapped.example.com/",
      ]
    ) {
      expect(await refusal(url), url).toMatchObject({ code: "forbidden_address" });
    }
    expect((await checkWebhookUrl("https://[::ffff:93.184.215.14]/", strict)).ok).toBe(true);
  });

  it("refuses private, shared, loopback, link-local, unique-local, unspecified, multicast and reserved literals", async () => {
    for (
      const [url, kind] of [
        ["https://10.255.255.255/", "private"],
        ["https://172.16.0.1/", "private"],
        ["https://172.31.255.254/", "private"],
        ["https://192.168.0.1/", "private"],
        ["https://100.64.0.1/", "shared"],
        ["https://100.127.255.254/", "shared"],
        ["https://127.0.0.1/", "loopback"],
        ["https://127.1.2.3/", "loopback"],
        ["https://0x7f.1/", "loopback"],
        ["https://2130706433/", "loopback"],
        ["https://[::1]/", "loopback"],
        ["https://169.254.1.1/", "link-local"],
        ["https://[fe80::1]/", "link-local"],
        ["https://[fc00::1]/", "unique-local"],
        ["https://[fdff:ffff::1]/", "unique-local"],
        ["https://0.0.0.0/", "unspecified"],
        ["https://[::]/", "unspecified"],
        ["https://224.0.0.1/", "multicast"],
        ["https://[ff02::1]/", "multicast"],
        ["https://255.255.255.255/", "reserved"],
        ["https://192.0.2.1/", "reserved"],
        ["https://[2001:db8::1]/", "reserved"],
        ["https://[fec0::1]/", "reserved"],
        ["https://[100::1]/", "reserved"],
        ["https://100.100.100.200/", "metadata"],
        ["https://168.63.129.16/", "metadata"],
        ["https://[fd00:ec2::254]/", "metadata"],
      ] as const
    ) {
      const refused = await refusal(url);
      expect(refused?.code, url).toBe("forbidden_address");
      expect(refused?.detail, url).toContain(kind);
    }
    // The edges of the blocks are public.
    for (
      const url of ["https://172.15.255.255/", "https://172.32.0.0/", "https://100.63.255.255/", "https://100.128.0.0/"]
    ) {
      expect((await checkWebhookUrl(url, strict)).ok, url).toBe(true);
    }
  });

  it("refuses a name when any of its addresses is refused, and one that does not resolve", async () => {
    expect(await refusal("https://private.example.com/")).toMatchObject({ code: "forbidden_address" });
    expect(await refusal("https://mixed.example.com/")).toMatchObject({ code: "forbidden_address" });
    expect(await refusal("https://mixed6.example.com/")).toMatchObject({ code: "forbidden_address" });
    expect((await refusal("https://metadata.example.com/"))?.detail).toMatch(/metadata/);
    expect(await refusal("https://nowhere.example.com/")).toMatchObject({ code: "unresolvable" });
    expect(await refusal("https://empty.example.com/")).toMatchObject({ code: "unresolvable" });
    const hanging: UrlPolicy = { allowHttpLoopback: false, resolve: () => new Promise(() => {}), resolveTimeoutMs: 20 };
    expect(await refusal("https://slow.example.com/", hanging)).toMatchObject({ code: "unresolvable" });
  });

  it("refuses metadata, local and single-label names without asking DNS", async () => {
    const resolver = tableResolver({});
    const policy = { allowHttpLoopback: false, resolve: resolver };
    for (
      const url of [
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://metadata/",
        "https://printer.local/",
        "https://db.internal/",
        "https://router.home.arpa/",
        "https://intranet/",
        "https://localhost/",
        "https://api.localhost/",
      ]
    ) {
      expect(await refusal(url, policy), url).toMatchObject({ code: "forbidden_host" });
    }
    expect(resolver.asked).toEqual([]);
  });

  it("allows http:// only to a loopback host with the flag; never to any other host", async () => {
    expect(await refusal("http://127.0.0.1:8080/hook")).toMatchObject({ code: "scheme" });
    expect(await refusal("http://localhost:8080/hook")).toMatchObject({ code: "scheme" });
    for (
      const url of ["http://127.0.0.1:8080/hook", "http://localhost:9/x", "http://[::1]:8080/", "http://127.9.9.9/"]
    ) {
      expect((await checkWebhookUrl(url, dev)).ok, url).toBe(true);
    }
    // http to a public host, a private one, or a name that merely resolves to loopback: refused even with the flag.
    for (
      const url of [
        "http://93.184.215.14/",
        "http://hooks.example.com/",
        "http://10.0.0.1/",
        "http://loopback.example.com/",
      ]
    ) {
      expect(await refusal(url, dev), url).toMatchObject({ code: "scheme" });
    }
    // The flag lets loopback through over https too (a local receiver with a test certificate)...
    expect((await checkWebhookUrl("https://loopback.example.com/", dev)).ok).toBe(true);
    expect((await checkWebhookUrl("https://[::ffff:127.0.0.1]/", dev)).ok).toBe(true);
    // ...and nothing else.
    expect(await refusal("https://10.0.0.1/", dev)).toMatchObject({ code: "forbidden_address" });
    expect(await refusal("https://[fd00::1]/", dev)).toMatchObject({ code: "forbidden_address" });
  });

  it("refuses other schemes, credentials, relative and overlong URLs", async () => {
    for (
      const url of [
        "ftp://hooks.example.com/",
        "file:///etc/passwd",
        "ws://hooks.example.com/",
        "javascript:alert(1)",
        "gopher://x.example.com/",
      ]
    ) {
      expect(await refusal(url), url).toMatchObject({ code: "scheme" });
    }
    expect(await refusal("https://user:pw@hooks.example.com/")).toMatchObject({ code: "credentials" });
    expect(await refusal("https://user@hooks.example.com/")).toMatchObject({ code: "credentials" });
    expect(await refusal("https://:pw@hooks.example.com/")).toMatchObject({ code: "credentials" });
    expect(await refusal("/relative")).toMatchObject({ code: "invalid" });
    expect(await refusal("not a url")).toMatchObject({ code: "invalid" });
    const base = "https://hooks.example.com/";
    expect((await checkWebhookUrl(base + "a".repeat(2048 - base.length), strict)).ok).toBe(true);
    expect(await refusal(base + "a".repeat(2049 - base.length))).toMatchObject({ code: "too_long" });
  });

  it("without a resolver (Workers) checks literal addresses and names only", async () => {
    const edge: UrlPolicy = { allowHttpLoopback: false, resolve: null };
    expect(await checkWebhookUrl("https://loopback.example.com/", edge)).toMatchObject({ ok: true, addresses: null });
    expect(await refusal("https://10.0.0.1/", edge)).toMatchObject({ code: "forbidden_address" });
    expect(await refusal("https://metadata.google.internal/", edge)).toMatchObject({ code: "forbidden_host" });
  });
});

describe("classifyAddress", () => {
  it("parses IPv4 and IPv6 (compressed, embedded IPv4, zones) and rejects what is neither", () => {
    expect(classifyAddress("8.8.8.8")).toBe("public");
    expect(classifyAddress("2001:4860:4860::8888")).toBe("public");
    expect(classifyAddress("fe80::1%eth0")).toBe("link-local");
    expect(classifyAddress("::ffff:192.168.1.1")).toBe("private");
    expect(classifyAddress("::ffff:c0a8:101")).toBe("private");
    expect(classifyAddress("0:0:0:0:0:0:0:1")).toBe("loopback");
    expect(classifyAddress("::")).toBe("unspecified");
    expect(classifyAddress("::10.0.0.1")).toBe("reserved");
    for (
      const bad of [
        "",
        "1.2.3",
        "1.2.3.4.5",
        "256.1.1.1",
        "01.2.3.4",
        "1:2:3:4:5:6:7:8:9",
        "1::2::3",
        "g::1",
        "example.com",
        ":::",
      ]
    ) {
      expect(classifyAddress(bad), bad).toBeNull();
    }
  });
});
