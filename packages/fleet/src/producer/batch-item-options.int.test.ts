import { Queue } from "bullmq";
import { describe, expect } from "vitest";
import { waitingJobs } from "../../../../test/fixtures/host-queue.js";
import { hostUp } from "../../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { FleetClient } from "./fleet-client.js";

// createBatch's per-item options: a lab's VMs come from several templates, each with its own
// readiness wait, and are still one batch.

const spec = (name: string) => ({ name, memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: 1 }] });

describe("FleetClient.createBatch with per-item options", () => {
  test("each item waits as its own options say (else as the batch's); a bad one is refused alone, naming the field", async ({
    redisUrl,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      await hostUp(client, "h1");
      const { batchId, items } = await client.createBatch(
        [spec("lb-a"), spec("lb-b"), spec("lb-c"), spec("lb-d")],
        { guestReady: true },
        [
          { guestReady: { strategy: "agent", timeoutSec: 30 } },
          undefined,
          { guestReady: false },
          { guestReady: { strategy: "nope" } as never },
        ],
      );
      expect(items.map((i) => [i.vm, i.jobId === undefined ? i.error?.field : "ok"])).toEqual([
        ["lb-a", "ok"],
        ["lb-b", "ok"],
        ["lb-c", "ok"],
        ["lb-d", "guestReady.strategy"],
      ]);
      const queue = new Queue(client.keys.hostQueue("h1"), { connection: { url: redisUrl }, prefix });
      const jobs = await waitingJobs(queue);
      await queue.close();
      const byVm = new Map(
        jobs.map((j) => [j.kind === "create" ? j.spec.name : "", j.kind === "create" ? j.guestReady : undefined]),
      );
      expect(byVm.get("lb-a")).toMatchObject({ strategy: "agent", timeoutSec: 30 });
      expect(byVm.get("lb-b")).toMatchObject({ strategy: "console" });
      expect(byVm.get("lb-c")).toBeUndefined();
      expect(byVm.has("lb-d")).toBe(false);
      for (const item of items.slice(0, 3))
        expect((await client.log.getJob(item.jobId as string))?.batchId).toBe(batchId);
    } finally {
      await client.close();
    }
  });
});
