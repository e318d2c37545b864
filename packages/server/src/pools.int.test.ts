import type { ApiToken } from "@virtfleet/core";
import { LabKeys, type PowerControl, TemplateStore } from "@virtfleet/labs";
import { ApiError, VirtfleetApi } from "@virtfleet/sdk";
import { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { call, startApi } from "../../../test/fixtures/api-server.js";
import { redisTest as test } from "../../../test/fixtures/redis-test.js";
import { buildOpenApi } from "./openapi.js";

// The pool routes through the SDK, against a real Redis; ready VMs are seeded as the pool manager
// would write them (no worker), and power is a fake that records resumes.

const ACME = "acme-token-0123456789abcdef";
const GLOBEX = "globex-token-0123456789abcdef";
const METRICS = "metrics-token-0123456789abcdef";
const TOKENS: ApiToken[] = [
  { id: "acme", token: ACME, scopes: ["vms:read", "vms:write"], tenant: "acme" },
  { id: "globex", token: GLOBEX, scopes: ["vms:read", "vms:write"], tenant: "globex" },
  { id: "metrics", token: METRICS, scopes: ["metrics:read"], tenant: "ops" },
] as ApiToken[];

const spec = { memoryMiB: 128, vcpus: 1, disks: [{ sizeGiB: 1, backing: "tiny" }] };

async function seedReady(redis: Redis, keys: LabKeys, pool: string, vms: string[]) {
  for (const vm of vms) {
    await redis.hset(keys.poolVm(pool, vm), {
      vm,
      host: "h1",
      addresses: JSON.stringify(["127.0.0.7"]),
      templateVersion: "1",
      jobId: `create-${vm}`,
      createdAt: String(Date.now()),
      readyAt: String(Date.now()),
    });
    await redis.zadd(keys.poolReady(pool), Date.now(), vm);
  }
}

describe("API: warm pools", () => {
  test("create, list, show, claim (201 / 503 POOL_EMPTY), release, update, delete; tenants apart; metrics; OpenAPI", async ({
    redisUrl,
    prefix,
  }) => {
    const resumed: string[] = [];
    const power: PowerControl = {
      async power(_host, vm, action) {
        if (action === "resume") resumed.push(vm);
        return { state: action === "resume" ? "running" : "paused" };
      },
    };
    const api = await startApi(redisUrl, prefix, TOKENS, { power });
    const redis = new Redis(redisUrl);
    const keys = new LabKeys(prefix);
    try {
      await new TemplateStore(redis, keys).put("po-api-t", spec);
      const acme = new VirtfleetApi({ baseUrl: api.base, token: ACME });
      const globex = new VirtfleetApi({ baseUrl: api.base, token: GLOBEX });

      const missing = await acme
        .createPool({ name: "po-api", template: "nope", minReady: 1, max: 3 })
        .catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(ApiError);
      expect(missing).toMatchObject({ status: 404, code: "NOT_FOUND", field: "template" });
      const bad = await call(api.base, "POST", "/v1/pools", ACME, { name: "po-api", template: "po-api-t", max: 3 });
      expect(bad.status).toBe(400);
      expect(bad.body).toMatchObject({ code: "INVALID_SPEC", field: "minReady" });

      const created = await acme.createPool({ name: "po-api", template: "po-api-t", minReady: 1, max: 3 });
      expect(created).toMatchObject({ name: "po-api", tenant: "acme", ready: 0, target: 1, idle: "pause" });
      expect((await acme.listPools()).map((p) => p.name)).toEqual(["po-api"]);
      expect(await globex.listPools()).toEqual([]);
      expect(await globex.getPool("po-api").catch((e: unknown) => e)).toMatchObject({ status: 404 });

      await seedReady(redis, keys, "po-api", ["po-api-aaaaaaaa"]);
      // Another tenant cannot claim it.
      expect(await globex.claim("po-api").catch((e: unknown) => e)).toMatchObject({ status: 404 });
      const claim = await acme.claim("po-api", { ttl: "10m" });
      expect(claim).toMatchObject({ vm: "po-api-aaaaaaaa", host: "h1", addresses: ["127.0.0.7"] });
      expect(resumed).toEqual(["po-api-aaaaaaaa"]);
      const empty = await acme.claim("po-api", {}).catch((e: unknown) => e);
      expect(empty).toMatchObject({ status: 503, code: "POOL_EMPTY" });
      expect((empty as ApiError).message).toContain('pool "po-api" has no ready VM');

      const detail = await acme.getPool("po-api");
      expect(detail).toMatchObject({ claimed: 1, ready: 0 });
      expect(detail.vms).toEqual([
        expect.objectContaining({ name: "po-api-aaaaaaaa", state: "claimed", leaseId: claim.leaseId }),
      ]);

      const metrics = await (
        await fetch(`${api.base}/metrics`, { headers: { authorization: `Bearer ${METRICS}` } })
      ).text();
      expect(metrics).toMatch(/virtfleet_pool_vms\{pool="po-api",state="claimed"\} 1/);
      expect(metrics).toMatch(/virtfleet_pool_vms\{pool="po-api",state="ready"\} 0/);
      expect(metrics).toMatch(/virtfleet_pool_claim_duration_seconds_count\{pool="po-api",outcome="claimed"\} 1/);
      expect(metrics).toMatch(/virtfleet_pool_claim_duration_seconds_count\{pool="po-api",outcome="empty"\} 1/);
      expect(metrics).toMatch(/virtfleet_pool_claim_duration_seconds_count\{pool="po-api",outcome="error"\} 1/);

      expect(await globex.releaseClaim("po-api", claim.vm).catch((e: unknown) => e)).toMatchObject({ status: 404 });
      expect(await acme.releaseClaim("po-api", claim.vm)).toEqual({ vm: claim.vm, pool: "po-api" });
      expect(await acme.releaseClaim("po-api", claim.vm).catch((e: unknown) => e)).toMatchObject({
        status: 404,
        field: "vm",
      });

      expect(await acme.updatePool("po-api", { minReady: 2, idle: "run" })).toMatchObject({ minReady: 2, idle: "run" });
      const tooMany = await acme.updatePool("po-api", { minReady: 9 }).catch((e: unknown) => e);
      expect(tooMany).toMatchObject({ status: 400, field: "minReady" });

      expect(await globex.removePool("po-api").catch((e: unknown) => e)).toMatchObject({ status: 404 });
      expect(await acme.removePool("po-api")).toMatchObject({ name: "po-api", vms: [] });
      expect(await acme.getPool("po-api").catch((e: unknown) => e)).toMatchObject({ status: 404 });

      const doc = buildOpenApi() as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
      expect(Object.keys(doc.paths)).toEqual(
        expect.arrayContaining([
          "/v1/pools",
          "/v1/pools/{name}",
          "/v1/pools/{name}/claims",
          "/v1/pools/{name}/claims/{vm}",
        ]),
      );
      expect(doc.paths["/v1/pools/{name}/claims"]?.post?.responses).toHaveProperty("503");
      expect(doc.paths["/v1/pools/{name}"]).toHaveProperty("patch");
    } finally {
      redis.disconnect();
      await api.close();
    }
  });
});
