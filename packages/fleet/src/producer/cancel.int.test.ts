import { describe, expect, vi } from "vitest";
import { hostUp } from "../../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { FleetClient } from "./fleet-client.js";

const VM = { memoryMiB: 64, vcpus: 1, disks: [{ sizeGiB: 1 }] };

describe("cancelJob", () => {
  test("a bundled create cancelled before it ran ends `cancelled` at once; its neighbour keeps going", async ({
    redisUrl,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      await hostUp(client, "h1");
      const [a, b] = await client.createVms([
        { ...VM, name: "cj-a" },
        { ...VM, name: "cj-b" },
      ]);
      if (a instanceof Error || b instanceof Error || a === undefined || b === undefined) throw new Error("refused");
      expect(await client.cancelJob(a.id)).toBe("cancelled");
      expect((await client.log.getJob(a.id))?.phase).toBe("cancelled");
      expect(await client.vms.get("cj-a")).toBeUndefined();
      expect((await client.log.getJob(b.id))?.phase).toBe("placed");
    } finally {
      await client.close();
    }
  });

  test("a job that ends by itself while it is being cancelled answers how it ended, not `cancelling`", async ({
    redisUrl,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      await hostUp(client, "h1");
      const [a] = await client.createVms([
        { ...VM, name: "cj-r1" },
        { ...VM, name: "cj-r2" },
      ]);
      if (a instanceof Error || a === undefined) throw new Error("refused");
      // Its worker finishes it just as the cancel request is recorded.
      const request = client.log.requestCancel.bind(client.log);
      vi.spyOn(client.log, "requestCancel").mockImplementation(async (jobId: string) => {
        await request(jobId);
        await client.log.append({ jobId, kind: "create", vm: "cj-r1", phase: "done", message: "", host: "h1" });
      });
      expect(await client.cancelJob(a.id)).toBe("done");
      expect((await client.log.getJob(a.id))?.phase).toBe("done");
    } finally {
      vi.restoreAllMocks();
      await client.close();
    }
  });
});
