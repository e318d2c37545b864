import { CapacityLedger } from "@virtfleet/fleet";
import { pino } from "pino";
import { describe, expect } from "vitest";
import { call } from "../../../test/fixtures/api-server.js";
import { hostStatus } from "../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../test/fixtures/redis-test.js";
import { TokenStore } from "./auth.js";
import { ApiServer } from "./server.js";

const ACME = "acme-token-0123456789abcdef";
const GLOBEX = "globex-token-0123456789abcdef";

async function withServer(
  redisUrl: string,
  prefix: string,
  run: (call: (method: string, path: string, token: string, body?: unknown) => Promise<Answer>) => Promise<void>,
): Promise<void> {
  const tokens = new TokenStore([
    { id: "acme", token: ACME, scopes: ["vms:read", "vms:write"], tenant: "acme", quota: { diskGiB: 100 } },
    { id: "globex", token: GLOBEX, scopes: ["vms:read", "vms:write"], tenant: "globex" },
  ]);
  const server = new ApiServer({ redisUrl, prefix, tokens, logger: pino({ level: "silent" }), port: 0 });
  try {
    await server.start();
    const status = hostStatus("ad-api-host");
    const redis = server.fleet.connect();
    await new CapacityLedger(redis, server.fleet.keys).setCapacity("ad-api-host", 65536, 64, 1000);
    redis.disconnect();
    await server.fleet.hosts.heartbeat(status, 60_000);
    await run((method, path, token, body) => call(server.url, method, path, token, body));
  } finally {
    await server.close();
  }
}

interface Answer {
  status: number;
  text: string;
  body: Record<string, unknown>;
}

const spec = { name: "ad-api-vm", memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: 1 }] };

describe("API: tenants kept apart at admission", () => {
  test("tenant B asking tenant A's VM with the same spec gets 409 NAME_CLASH with no host or job; B's batch shows nothing of A's job", async ({
    redisUrl,
    prefix,
  }) => {
    await withServer(redisUrl, prefix, async (call) => {
      const a = await call("POST", "/v1/vms", ACME, { spec });
      expect(a.status).toBe(202);
      const aJob = a.body.jobId as string;

      const b = await call("POST", "/v1/vms", GLOBEX, { spec });
      expect(b.status).toBe(409);
      expect(b.body).toMatchObject({ code: "NAME_CLASH", field: "spec.name" });
      expect(b.text).not.toContain(aJob);
      expect(b.text).not.toContain("ad-api-host");
      expect(b.text).not.toContain("acme");

      const batch = await call("POST", "/v1/batches", GLOBEX, { vms: [spec] });
      expect(batch.status).toBe(202);
      expect(batch.text).not.toContain(aJob);
      const view = await call("GET", `/v1/batches/${batch.body.batchId as string}`, GLOBEX);
      expect(view.status).toBe(200);
      expect(view.text).not.toContain(aJob);
      expect(view.text).not.toContain("ad-api-host");
      expect(view.body.items).toEqual([expect.objectContaining({ vm: "ad-api-vm", phase: "refused" })]);
      // A still gets its own job back.
      expect((await call("POST", "/v1/vms", ACME, { spec })).body.jobId).toBe(aJob);
    });
  });

  test("limits: over-limit labels are 400 naming the field; the tenant's diskGiB quota is QUOTA_EXCEEDED; 16 × 64 TiB is NO_CAPACITY", async ({
    redisUrl,
    prefix,
  }) => {
    await withServer(redisUrl, prefix, async (call) => {
      const labels = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, "v"]));
      const many = await call("POST", "/v1/vms", ACME, { spec: { ...spec, name: "ad-api-labels", labels } });
      expect(many.status).toBe(400);
      expect(many.body).toMatchObject({ code: "INVALID_SPEC", field: "body.spec.labels" });
      const ready = await call("POST", "/v1/vms", ACME, { spec, guestReady: { timeoutSec: 3600 } });
      expect(ready.status).toBe(400);
      expect(ready.body).toMatchObject({ field: "body.guestReady.timeoutSec" });

      const big = { ...spec, name: "ad-api-big", disks: [{ sizeGiB: 101 }] };
      const over = await call("POST", "/v1/vms", ACME, { spec: big });
      expect(over.body).toMatchObject({ code: "QUOTA_EXCEEDED", field: "quota.diskGiB" });
      // The host's disk room: 16 × 64 TiB finds no host.
      const huge = { ...spec, name: "ad-api-huge", disks: Array.from({ length: 16 }, () => ({ sizeGiB: 65536 })) };
      const none = await call("POST", "/v1/vms", GLOBEX, { spec: huge });
      expect(none.status).toBe(409);
      expect(none.body).toMatchObject({ code: "NO_CAPACITY" });
    });
  });
});
