import { describe, expect, it } from "vitest";
import { Authenticator } from "../../src/http/auth/authenticator.ts";
import { signHs256 } from "./helpers.ts";

const secret = "unit-test-secret-0123456789";
const authenticator = new Authenticator({
  tokens: new Map(),
  jwtSecret: secret,
  jwksUrl: undefined,
  clockSkewSeconds: 60,
});

describe("JWT header checks", () => {
  it("accepts a plain HS256 token and refuses one that names critical extensions (RFC 7515 §4.1.11)", async () => {
    expect(await authenticator.tenantOf(await signHs256(secret, { sub: "acme" }))).toBe("acme");
    expect(await authenticator.tenantOf(await signHs256(secret, { sub: "acme" }, { crit: ["b64"], b64: false })))
      .toBeNull();
    expect(await authenticator.tenantOf(await signHs256(secret, { sub: "acme" }, { crit: [] }))).toBeNull();
  });
});
