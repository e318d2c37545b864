import { Queue } from "bullmq";
import { describe, expect } from "vitest";
import { createData, type HoldingWorker, holdingWorker } from "../../../../../test/fixtures/host-queue.js";
import { redisTest as test } from "../../../../../test/fixtures/redis-test.js";
import { Keys } from "../../redis/keys.js";
import { LuaCommand } from "../../redis/lua.js";
import { BUNDLE_JOB_NAME, bundleJobId, queuedJobs } from "../bundle.js";
import { jobsInQueue } from "../in-queue.js";
import { jobsInQueueEntries } from "../open-bundles.js";

const join = new LuaCommand(new URL("./join-bundle-3.lua", import.meta.url));

const create = (n: number) => createData(n, "jb-h1", "jb");
const asArgs = (...ns: number[]) => [String(ns.length), ns.map((n) => JSON.stringify(create(n))).join(",")];

describe("bundles/commands/join-bundle-3.lua", () => {
  test("appends jobs to a bundle waiting never started, within the most a bundle carries; keeps its count", async ({
    redis,
    redisUrl,
    prefix,
  }) => {
    const queue = new Queue(new Keys(prefix).hostQueue("jb-h1"), { connection: { url: redisUrl }, prefix });
    try {
      const id = bundleJobId(2);
      await queue.add(BUNDLE_JOB_NAME, { jobs: [create(1), create(2)] }, { jobId: id });
      const keys = [queue.keys.wait as string, queue.toKey(id), new Keys(prefix).hostDown("jb-h1")];
      expect(await join.run(redis, keys, [id, 5, ...asArgs(3)])).toBe(3);
      expect(await join.run(redis, keys, [id, 5, ...asArgs(4, 5)])).toBe(5);
      // No room for one more (at most 5 here): nothing written.
      expect(await join.run(redis, keys, [id, 5, ...asArgs(6)])).toBe(0);
      const job = await queue.getJob(id);
      const { jobs, bad } = queuedJobs({ name: job?.name as string, data: job?.data });
      expect(bad).toEqual([]);
      expect(jobs.map((j) => j.jobId)).toEqual(["create-1", "create-2", "create-3", "create-4", "create-5"]);
      expect(await redis.hget(queue.toKey(id), "vfJobs")).toBe("5");
      // Counted by what it carries now, not by its id's 2; found by jobsInQueue too.
      expect(await jobsInQueueEntries(redis, queue, [id, "create-9"])).toEqual([5, 1]);
      expect([...(await jobsInQueue(queue, ["create-5", "create-6"]))]).toEqual(["create-5"]);
    } finally {
      await queue.close();
    }
  });

  test("writes nothing to a bundle that is not waiting: delayed, taken by a worker, started before, or gone", async ({
    redis,
    redisUrl,
    prefix,
  }) => {
    const connection = { url: redisUrl };
    const queue = new Queue(new Keys(prefix).hostQueue("jb-h1"), { connection, prefix });
    let worker: HoldingWorker | undefined;
    const down = new Keys(prefix).hostDown("jb-h1");
    try {
      const delayed = bundleJobId(1);
      await queue.add(BUNDLE_JOB_NAME, { jobs: [create(1)] }, { jobId: delayed, delay: 60_000 });
      const before = await redis.hget(queue.toKey(delayed), "data");
      expect(
        await join.run(redis, [queue.keys.wait as string, queue.toKey(delayed), down], [delayed, 250, ...asArgs(2)]),
      ).toBe(0);
      expect(await redis.hget(queue.toKey(delayed), "data")).toBe(before);

      // Gone (never added, or ended and removed).
      const gone = bundleJobId(1);
      expect(
        await join.run(redis, [queue.keys.wait as string, queue.toKey(gone), down], [gone, 250, ...asArgs(2)]),
      ).toBe(0);
      expect(await redis.exists(queue.toKey(gone))).toBe(0);

      // Taken by a worker: its data was read as it was taken, so no job may join it any more.
      const taken = bundleJobId(1);
      await queue.add(BUNDLE_JOB_NAME, { jobs: [create(3)] }, { jobId: taken });
      worker = holdingWorker(queue.name, redisUrl, prefix);
      const data = await worker.taken;
      expect(
        await join.run(redis, [queue.keys.wait as string, queue.toKey(taken), down], [taken, 250, ...asArgs(4)]),
      ).toBe(0);
      expect(JSON.parse((await redis.hget(queue.toKey(taken), "data")) as string)).toEqual(data);
      worker.release();
      await worker.close();
      worker = undefined;

      // Back in the queue after a start (a worker handed it back, or it stalled): not joined either.
      const again = bundleJobId(1);
      await queue.add(BUNDLE_JOB_NAME, { jobs: [create(5)] }, { jobId: again });
      await redis.hset(queue.toKey(again), "ats", "1");
      expect(
        await join.run(redis, [queue.keys.wait as string, queue.toKey(again), down], [again, 250, ...asArgs(6)]),
      ).toBe(0);
      expect((await queue.getJob(again))?.data).toEqual({ jobs: [create(5)] });
    } finally {
      await worker?.close();
      await queue.close();
    }
  });

  test("writes nothing once the host is judged lost (the host monitor then re-places the bundle's jobs)", async ({
    redis,
    redisUrl,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const queue = new Queue(keys.hostQueue("jb-h1"), { connection: { url: redisUrl }, prefix });
    try {
      const id = bundleJobId(1);
      await queue.add(BUNDLE_JOB_NAME, { jobs: [create(1)] }, { jobId: id });
      const args = [queue.keys.wait as string, queue.toKey(id), keys.hostDown("jb-h1")];
      await redis.set(keys.hostDown("jb-h1"), "2026-12-01T00:00:00.000Z");
      expect(await join.run(redis, args, [id, 250, ...asArgs(2)])).toBe(0);
      expect((await queue.getJob(id))?.data).toEqual({ jobs: [create(1)] });
      // Back (its worker clears the mark): the bundle, still waiting, takes creates again.
      await redis.del(keys.hostDown("jb-h1"));
      expect(await join.run(redis, args, [id, 250, ...asArgs(2)])).toBe(2);
    } finally {
      await queue.close();
    }
  });

  test("takes exactly 3 keys", ({ redis }) => {
    expect(() => join.run(redis, ["a", "b"], ["x", 1, "1", "{}"])).toThrow(/takes 3 keys, got 2/);
  });
});
