import { type ApiToken, networkAllowed, ValidationError } from "@virtfleet/core";
import { describe, expect, it } from "vitest";
import { TokenStore } from "./auth.js";

const token = (id: string, tenant: string, extra: Partial<ApiToken> = {}): ApiToken => ({
  id,
  token: `${id}-token-0123456789abcdef`,
  scopes: ["vms:write"],
  tenant,
  ...extra,
});
const auth = (store: TokenStore, id: string) => store.authenticate(`Bearer ${id}-token-0123456789abcdef`);
const thrown = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return e;
  }
};

describe("TokenStore: networks and webhook secrets", () => {
  it("each token carries its own network allow-list; none by default", () => {
    const store = new TokenStore([token("a", "acme", { networks: ["br-lab"] }), token("b", "acme")]);
    expect(networkAllowed(auth(store, "a").networks, { type: "bridge", bridge: "br-lab" })).toBe(true);
    expect(networkAllowed(auth(store, "b").networks, { type: "bridge", bridge: "br-lab" })).toBe(false);
  });

  it("a bad allow-list entry names the token and the entry", () => {
    const error = thrown(
      () => new TokenStore([token("a", "acme"), token("b", "acme", { networks: ["ok", "no way"] })]),
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe("tokens.1.networks.1");
  });

  it("a tenant's webhook secret comes from its tokens; two different ones are refused", () => {
    const store = new TokenStore([
      token("a", "acme"),
      token("b", "acme", { webhookSecret: "acme-secret-0123456789" }),
      token("c", "globex"),
    ]);
    expect(store.webhookSecret("acme")).toBe("acme-secret-0123456789");
    expect(store.webhookSecret("globex")).toBeUndefined();
    const error = thrown(
      () =>
        new TokenStore([
          token("a", "acme", { webhookSecret: "acme-secret-0123456789" }),
          token("b", "acme", { webhookSecret: "another-secret-0123456789" }),
        ]),
    );
    expect((error as ValidationError).field).toBe("tokens.1.webhookSecret");
  });
});
