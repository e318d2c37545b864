import { Keys } from "@virtfleet/fleet";
import { Queue } from "bullmq";
import { describe, expect } from "vitest";
import { call, startApi } from "../../../test/fixtures/api-server.js";
import { redisTest as test } from "../../../test/fixtures/redis-test.js";

const TOKEN = "ry-token-0123456789abcdef0123";

describe("API: readiness strategies and a VM's addresses", () => {
  test("guestReady takes a strategy (a bare pattern still means console); a bad one names the field", async ({
    redisUrl,
    prefix,
  }) => {
    const api = await startApi(redisUrl, prefix, [
      { id: "ry", token: TOKEN, scopes: ["vms:read", "vms:write"], tenant: "ry" },
    ]);
    try {
      const spec = (name: string) => ({ name, memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: 1 }] });
      const ip = await call(api.base, "POST", "/v1/vms", TOKEN, {
        spec: spec("ry-ip"),
        guestReady: { strategy: "ip" },
      });
      expect(ip.status, ip.text).toBe(202);
      const old = await call(api.base, "POST", "/v1/vms", TOKEN, {
        spec: spec("ry-old"),
        guestReady: { pattern: "READY", timeoutSec: 60 },
      });
      expect(old.status, old.text).toBe(202);
      const queue = new Queue(new Keys(prefix).hostQueue("h1"), { connection: { url: redisUrl }, prefix });
      const jobs = await queue.getJobs(["waiting"]);
      await queue.close();
      const ready = Object.fromEntries(jobs.map((j) => [j.data.spec.name, j.data.guestReady]));
      expect(ready["ry-ip"]).toEqual({ strategy: "ip", timeoutSec: 300 });
      expect(ready["ry-old"]).toEqual({ strategy: "console", pattern: "READY", timeoutSec: 60 });

      const bad = await call(api.base, "POST", "/v1/vms", TOKEN, {
        spec: spec("ry-bad"),
        guestReady: { strategy: "agent", pattern: "x" },
      });
      expect(bad.status).toBe(400);
      expect(bad.body).toMatchObject({ code: "INVALID_SPEC", field: "body.guestReady.pattern" });
    } finally {
      await api.close();
    }
  });

  test("GET /v1/vms/{name} and the list return the addresses on the VM's record", async ({ redisUrl, prefix }) => {
    const api = await startApi(redisUrl, prefix, [{ id: "ry", token: TOKEN, scopes: ["vms:read"], tenant: "ry" }]);
    try {
      await api.server.fleet.vms.put({
        name: "ry-addr",
        hostId: "h1",
        state: "running",
        fingerprint: "f",
        jobId: "job-1",
        memoryMiB: 256,
        vcpus: 1,
        labels: {},
        tenant: "ry",
        addresses: ["192.0.2.10"],
        updatedAt: new Date().toISOString(),
      });
      const one = await call(api.base, "GET", "/v1/vms/ry-addr", TOKEN);
      expect(one.status, one.text).toBe(200);
      expect(one.body.addresses).toEqual(["192.0.2.10"]);
      const list = await call(api.base, "GET", "/v1/vms", TOKEN);
      expect((list.body as unknown as { addresses?: string[] }[])[0]?.addresses).toEqual(["192.0.2.10"]);
    } finally {
      await api.close();
    }
  });
});
