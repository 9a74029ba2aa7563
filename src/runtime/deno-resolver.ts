import type { Resolver } from "../webhooks/url-policy.ts";

interface DenoDns {
  resolveDns(query: string, recordType: "A" | "AAAA"): Promise<string[]>;
}

/**
 * Deno's webhook resolver: `Deno.resolveDns` for A and AAAA (needs `--allow-net`). It asks
 * DNS directly, not `/etc/hosts`: a name only the hosts file knows does not resolve (and
 * is refused). Fails closed: a record type that fails for any reason but "no such
 * record" fails the whole resolution, so no address goes unjudged.
 */
export const denoResolve: Resolver = async (hostname) => {
  const deno = (globalThis as unknown as { Deno: DenoDns }).Deno;
  const results = await Promise.allSettled([deno.resolveDns(hostname, "A"), deno.resolveDns(hostname, "AAAA")]);
  const addresses: string[] = [];
  for (const result of results) {
    if (result.status === "fulfilled") addresses.push(...result.value);
    else if ((result.reason as { name?: unknown } | null)?.name !== "NotFound") throw result.reason;
  }
  if (addresses.length === 0) throw new Error(`${hostname} has no A or AAAA record`);
  return addresses;
};
