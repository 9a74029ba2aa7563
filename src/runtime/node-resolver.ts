import { lookup } from "node:dns/promises";
import type { Resolver } from "../webhooks/url-policy.ts";

/**
 * Node's webhook resolver: `getaddrinfo` with every address (A and AAAA), the same
 * resolution Node's fetch connects through (`/etc/hosts` included), so the addresses the
 * URL policy judges are the ones a delivery would reach.
 */
export const nodeResolve: Resolver = async (hostname) =>
  (await lookup(hostname, { all: true })).map((entry) => entry.address);
