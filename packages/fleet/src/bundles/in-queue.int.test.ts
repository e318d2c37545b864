import { Queue } from "bullmq";
import { describe, expect } from "vitest";
import { createData, type HoldingWorker, holdingWorker } from "../../../../test/fixtures/host-queue.js";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { Keys } from "../redis/keys.js";
import { BUNDLE_JOB_NAME, bundleJobId } from "./bundle.js";
import { jobsInQueue } from "./in-queue.js";

const create = (n: number) => createData(n, "iq-h1", "iq");

describe("jobs in a host's queue", () => {
  test("found by their own BullMQ id or in a bundle still to run or running; a job of no entry, or of a bad bundle entry, is not", async ({
    redisUrl,
    prefix,
  }) => {
    const queue = new Queue(new Keys(prefix).hostQueue("iq-h1"), { connection: { url: redisUrl }, prefix });
    let worker: HoldingWorker | undefined;
    try {
      await queue.add("create", create(1), { jobId: "create-1" });
      await queue.add(BUNDLE_JOB_NAME, { jobs: [create(2), create(3)] }, { jobId: bundleJobId(2) });
      await queue.add(BUNDLE_JOB_NAME, { jobs: [create(4)] }, { jobId: bundleJobId(1), delay: 60_000 });
      // A bundle entry that does not parse carries nothing (its job 6 is not taken as queued).
      await queue.add(BUNDLE_JOB_NAME, { jobs: [{ ...create(6), spec: {} }] }, { jobId: bundleJobId(1) });
      const ids = ["create-1", "create-2", "create-3", "create-4", "create-5", "create-6"];
      expect([...(await jobsInQueue(queue, ids))].sort()).toEqual(["create-1", "create-2", "create-3", "create-4"]);
      expect([...(await jobsInQueue(queue, ["create-1"]))]).toEqual(["create-1"]);
      expect([...(await jobsInQueue(queue, ["create-3", "create-5"]))]).toEqual(["create-3"]);
      expect(await jobsInQueue(queue, [])).toEqual(new Set());

      // A running bundle (its worker took it; its jobs wait for their turn) still holds its jobs.
      await queue.drain(true);
      await queue.add(BUNDLE_JOB_NAME, { jobs: [create(7), create(8)] }, { jobId: bundleJobId(2) });
      worker = holdingWorker(queue.name, redisUrl, prefix);
      await worker.taken;
      expect(await queue.getJobCounts("active", "waiting")).toMatchObject({ active: 1, waiting: 0 });
      expect([...(await jobsInQueue(queue, ["create-7", "create-8", "create-2"]))].sort()).toEqual([
        "create-7",
        "create-8",
      ]);
    } finally {
      await worker?.close();
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
    }
  });
});
