import { describe, expect, vi } from "vitest";
import { hostUp } from "../../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { FleetClient } from "./fleet-client.js";

const VM = { memoryMiB: 64, vcpus: 1, disks: [{ sizeGiB: 1 }] };

/** Two creates on one host with no worker: they wait there in one bundle. Their handles. */
async function bundledPair(client: FleetClient, names: [string, string]) {
  await hostUp(client, "h1");
  const [a, b] = await client.createVms(names.map((name) => ({ ...VM, name })));
  if (a === undefined || b === undefined || a instanceof Error || b instanceof Error) throw new Error("refused");
  return [a, b] as const;
}

describe("cancelJob", () => {
  test("a bundled create cancelled before it ran ends `cancelled` at once; its neighbour keeps going", async ({
    redisUrl,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      const [a, b] = await bundledPair(client, ["cj-a", "cj-b"]);
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
      const [a] = await bundledPair(client, ["cj-r1", "cj-r2"]);
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
