import { Queue } from "bullmq";
import { describe, expect, vi } from "vitest";
import { type HoldingWorker, holdingWorker } from "../../../../test/fixtures/host-queue.js";
import { hostUp } from "../../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { BUNDLE_JOB_NAME, queuedJobs } from "../bundles/bundle.js";
import { FleetClient } from "./fleet-client.js";

describe("createVms: the pending set", () => {
  test("a window of creates leaves the pending set in one command for all its hosts, not one per host or job; all are enqueued", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    const monitor = await redis.monitor();
    try {
      const big = { memoryMiB: { total: 65536, capacity: 65536 }, vcpus: { total: 64, capacity: 64 } };
      for (const h of ["h1", "h2", "h3"]) await hostUp(client, h, big);
      const pendingKey = client.keys.pendingJobs();
      const removals: string[][] = [];
      const marker = `pm-marker-${prefix}`;
      let markerSeen = false;
      monitor.on("monitor", (_time: string, args: string[]) => {
        if (args[0]?.toLowerCase() === "zrem" && args[1] === pendingKey) removals.push(args.slice(2));
        if (args[0]?.toLowerCase() === "echo" && args[1] === marker) markerSeen = true;
      });
      const results = await client.createVms(
        Array.from({ length: 20 }, (_, i) => ({ name: `pm-${i}`, memoryMiB: 64, vcpus: 1, disks: [{ sizeGiB: 1 }] })),
      );
      const jobIds = results.map((r) => {
        if (r instanceof Error) throw r;
        return r.id;
      });
      // MONITOR reports a command once Redis has run it; the set is empty by now, so they all ran.
      expect(await redis.zcard(pendingKey)).toBe(0);
      // It reports them in the order they ran, on its own connection: once it reports a marker sent
      // now, it has reported every removal before it.
      await redis.echo(marker);
      await vi.waitFor(() => expect(markerSeen).toBe(true), { timeout: 5000, interval: 10 });
      expect(removals).toHaveLength(1);
      expect([...(removals[0] ?? [])].sort()).toEqual([...jobIds].sort());
      // Spread over the three hosts, each host's jobs in its own queue.
      const waiting = await Promise.all(
        ["h1", "h2", "h3"].map(async (h) => (await client.queueCounts(h)).waiting ?? 0),
      );
      expect(waiting.every((n) => n > 0)).toBe(true);
      expect(waiting.reduce((t, n) => t + n, 0)).toBe(20);
    } finally {
      monitor.disconnect();
      await client.close();
    }
  });
});

describe("createVms: open bundles", () => {
  const vm = (name: string) => ({ name, memoryMiB: 64, vcpus: 1, disks: [{ sizeGiB: 1 }] });
  const ids = (results: unknown[]) =>
    results.map((r) => {
      if (r instanceof Error) throw r;
      return (r as { id: string }).id;
    });

  test("a later call's creates join the host's bundle while it waits: one BullMQ job for both calls, every job in it once", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    const queue = new Queue(client.keys.hostQueue("h1"), { connection: { url: redisUrl }, prefix });
    try {
      await hostUp(client, "h1", { memoryMiB: { total: 65536, capacity: 65536 }, vcpus: { total: 64, capacity: 64 } });
      const first = ids(await client.createVms([vm("ob-1"), vm("ob-2")]));
      const second = ids(await client.createVms([vm("ob-3"), vm("ob-4"), vm("ob-5")]));
      const waiting = await queue.getJobs(["waiting"]);
      expect(waiting.map((j) => j.name)).toEqual([BUNDLE_JOB_NAME]);
      const { jobs, bad } = queuedJobs(waiting[0] as { name: string; data: unknown });
      expect(bad).toEqual([]);
      expect(jobs.map((j) => j.jobId)).toEqual([...first, ...second]);
      expect((await client.queueCounts("h1")).waiting).toBe(5);
      expect(await redis.zcard(client.keys.pendingJobs())).toBe(0);
      // A call of one create still adds a job of its own (under its job id).
      const one = await client.createVm(vm("ob-6"));
      expect((await queue.getJobs(["waiting"])).map((j) => j.id).sort()).toEqual(
        [waiting[0]?.id as string, one.id].sort(),
      );
      expect((await client.queueCounts("h1")).waiting).toBe(6);
    } finally {
      await queue.close();
      await client.close();
    }
  });

  test("once a worker has taken the bundle, a later call adds a bundle of its own; a host's only create of a call is bundled too", async ({
    redisUrl,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    const connection = { url: redisUrl };
    const queue = new Queue(client.keys.hostQueue("h1"), { connection, prefix });
    let worker: HoldingWorker | undefined;
    try {
      const big = { memoryMiB: { total: 65536, capacity: 65536 }, vcpus: { total: 64, capacity: 64 } };
      await hostUp(client, "h1", big);
      await hostUp(client, "h2", big);
      // Spread: one create for each host, each as a bundle of one.
      const first = ids(await client.createVms([vm("ot-1"), vm("ot-2")]));
      const h1 = await queue.getJobs(["waiting"]);
      expect(h1.map((j) => j.name)).toEqual([BUNDLE_JOB_NAME]);
      worker = holdingWorker(queue.name, redisUrl, prefix);
      const data = (await worker.taken) as { jobs: { jobId: string }[] };
      const second = ids(await client.createVms([vm("ot-3"), vm("ot-4")]));
      // The taken bundle kept its one job; h1's new create went in a new bundle.
      expect(data.jobs).toHaveLength(1);
      expect(first).toContain(data.jobs[0]?.jobId);
      const waiting = await queue.getJobs(["waiting"]);
      expect(waiting.map((j) => j.name)).toEqual([BUNDLE_JOB_NAME]);
      const later = queuedJobs(waiting[0] as { name: string; data: unknown }).jobs.map((j) => j.jobId);
      expect(later).toHaveLength(1);
      expect(second).toContain(later[0]);
      const active = await queue.getJobs(["active"]);
      expect(queuedJobs(active[0] as { name: string; data: unknown }).jobs.map((j) => j.jobId)).toEqual(
        data.jobs.map((j) => j.jobId),
      );
      worker.release();
    } finally {
      await worker?.close();
      await queue.close();
      await client.close();
    }
  });
});
