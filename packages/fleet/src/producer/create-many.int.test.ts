import { describe, expect } from "vitest";
import { hostUp } from "../../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
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
      monitor.on("monitor", (_time: string, args: string[]) => {
        if (args[0]?.toLowerCase() === "zrem" && args[1] === pendingKey) removals.push(args.slice(2));
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
      await redis.ping();
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
