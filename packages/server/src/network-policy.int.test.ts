import { describe, expect } from "vitest";
import { call, spec, startApi } from "../../../test/fixtures/api-server.js";
import { redisTest as test } from "../../../test/fixtures/redis-test.js";

const TOKENS = {
  none: "no-networks-token-0123456789",
  lab: "lab-networks-token-0123456789",
  any: "any-network-token-0123456789",
};
const tokens = [
  { id: "none", token: TOKENS.none, scopes: ["vms:read", "vms:write"] as const, tenant: "acme" },
  {
    id: "lab",
    token: TOKENS.lab,
    scopes: ["vms:read", "vms:write"] as const,
    tenant: "acme",
    networks: ["br-lab", "network=lab"],
  },
  { id: "any", token: TOKENS.any, scopes: ["vms:read", "vms:write"] as const, tenant: "ops", networks: ["*"] },
].map((t) => ({ ...t, scopes: [...t.scopes] }));

const br = (bridge: string) => ({ type: "bridge", bridge });
const net = (network: string) => ({ type: "network", network });

describe("each token's network allow-list", () => {
  test("a network not in the token's list is 403 FORBIDDEN naming the field, and nothing is enqueued", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const api = await startApi(redisUrl, prefix, tokens);
    try {
      const before = (await redis.keys(`${prefix}:*`)).sort();
      const cases: [string, string, unknown, string][] = [
        // No list: not even one network.
        [TOKENS.none, "/v1/vms", { spec: spec("at-n1", [br("br-lab")]) }, "spec.networks.0"],
        [TOKENS.none, "/v1/vms", { spec: spec("at-n2", [net("default")]) }, "spec.networks.0"],
        // A bridge of the list is not a libvirt network of that name, nor the other way round.
        [TOKENS.lab, "/v1/vms", { spec: spec("at-n3", [br("br-lab"), br("br-mgmt")]) }, "spec.networks.1"],
        [TOKENS.lab, "/v1/vms", { spec: spec("at-n4", [net("br-lab")]) }, "spec.networks.0"],
        [TOKENS.lab, "/v1/vms", { spec: spec("at-n5", [br("lab")]) }, "spec.networks.0"],
        [
          TOKENS.lab,
          "/v1/batches",
          { vms: [spec("at-b1", [br("br-lab")]), spec("at-b2", [net("lab"), net("storage")])] },
          "vms.1.networks.1",
        ],
        [TOKENS.lab, "/v1/batches", { template: spec("at-t{n}", [br("br-storage")]), count: 3 }, "template.networks.0"],
      ];
      for (const [token, path, body, field] of cases) {
        const r = await call(api.base, "POST", path, token, body);
        expect([path, r.status, r.body.code, r.body.field]).toEqual([path, 403, "FORBIDDEN", field]);
      }
      // Nothing was written: no job, no VM, no batch, nothing queued for the host.
      expect((await redis.keys(`${prefix}:*`)).sort()).toEqual(before);
    } finally {
      await api.close();
    }
  });

  test("networks in the list, `*`, and `--network none` are accepted", async ({ redisUrl, prefix }) => {
    const api = await startApi(redisUrl, prefix, tokens);
    try {
      const ok: [string, string, unknown][] = [
        [TOKENS.none, "/v1/vms", { spec: spec("at-ok1") }],
        [TOKENS.lab, "/v1/vms", { spec: spec("at-ok2", [br("br-lab"), net("lab")]) }],
        [TOKENS.lab, "/v1/batches", { template: spec("at-okt{n}", [{ ...br("br-lab"), model: "e1000" }]), count: 2 }],
        [TOKENS.any, "/v1/vms", { spec: spec("at-ok3", [br("br-mgmt"), net("default")]) }],
      ];
      for (const [token, path, body] of ok) {
        const r = await call(api.base, "POST", path, token, body);
        expect([path, r.status]).toEqual([path, 202]);
      }
    } finally {
      await api.close();
    }
  });
});
