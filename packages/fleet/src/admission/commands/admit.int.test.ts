import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostStatus } from "../../../../../test/fixtures/host-status.js";
import { LocalRedis } from "../../../../../test/fixtures/redis-server.js";
import { HostRegistry } from "../../hosts/host-registry.js";
import { CapacityLedger } from "../../placement/capacity-ledger.js";
import { hostClass } from "../../placement/host-class.js";
import { FleetClient } from "../../producer/fleet-client.js";
import { Keys } from "../../redis/keys.js";

// admit.lua at fleet scale: a create reads a handful of hosts, not all of them. A Redis of its own,
// so its command counts are this test's alone.
let local: LocalRedis;
beforeAll(async () => {
  local = await LocalRedis.start({ appendonly: false });
});
afterAll(async () => {
  await local.stop();
});

/** Calls of each command since the last CONFIG RESETSTAT. */
async function calls(redis: Redis): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of (await redis.info("commandstats")).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    out[m[1] as string] = Number(m[2]);
  }
  return out;
}

describe("admit", () => {
  it("a create at 1,000 hosts reads a handful of them, and lands on the one of its zone with most free memory", async () => {
    const prefix = "pl-scale";
    const keys = new Keys(prefix);
    const redis = new Redis(local.url, { maxRetriesPerRequest: null });
    const client = new FleetClient({ redisUrl: local.url, prefix });
    try {
      const hosts = new HostRegistry(redis, keys);
      const ledger = new CapacityLedger(redis, keys);
      // 1,000 hosts in 4 zones (4 classes), all up; the busier the greater the id.
      await Promise.all(
        Array.from({ length: 1000 }, async (_, i) => {
          const id = `pl-h${String(i).padStart(4, "0")}`;
          await ledger.setCapacity(id, 65536, 64);
          await hosts.heartbeat(hostStatus(id, { labels: { zone: `z${i % 4}` } }), 60_000);
          if (i > 0) await ledger.claim([id], `busy-${i}`, 16 + i, 1);
        }),
      );
      const spec = (name: string) => ({ name, memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: 1 }] });
      await client.createVm(spec("pl-warm")); // the scripts loaded, the hosts list read and cached
      await redis.config("RESETSTAT");
      const job = await client.createVm(spec("pl-vm"), { labels: { zone: "z0" } });
      const stats = await calls(redis);
      // The old admission read 4 keys of every candidate host (1,000 HMGETs and more).
      expect(stats.hmget ?? 0).toBeGreaterThan(0);
      expect(stats.hmget ?? 0).toBeLessThan(50);
      expect((stats.zscore ?? 0) + (stats.exists ?? 0) + (stats.hexists ?? 0)).toBeLessThan(50);
      // The first create took 256 MiB of pl-h0000; of zone z0, pl-h0004 (20 MiB taken) has the most free now.
      expect((await client.vms.get("pl-warm"))?.hostId).toBe("pl-h0000");
      expect((await client.log.getJob(job.id))?.hostId).toBe("pl-h0004");
    } finally {
      await client.close();
      redis.disconnect();
    }
  });

  it("an admission reads its host's state, its host's class and its VM's claim once each", async () => {
    const prefix = "pl-once";
    const keys = new Keys(prefix);
    const redis = new Redis(local.url, { maxRetriesPerRequest: null });
    const client = new FleetClient({ redisUrl: local.url, prefix });
    try {
      const ledger = new CapacityLedger(redis, keys);
      await ledger.setCapacity("pl-once-h", 65536, 64);
      await new HostRegistry(redis, keys).heartbeat(hostStatus("pl-once-h"), 60_000);
      const spec = (name: string) => ({ name, memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: 1 }] });
      await client.createVm(spec("pl-once-warm")); // the scripts loaded, the hosts list read and cached
      await redis.config("RESETSTAT");
      const job = await client.createVm(spec("pl-once-vm"));
      const stats = await calls(redis);
      // HGETs: the VM's state, its claim, and one outside the script; HMGETs: the host's state
      // (spread's walk of the ties meets it again: not read again), and one outside the script.
      // Before: the claim and the class were read twice, the state too, and the capMem once more.
      expect({ hget: stats.hget, hmget: stats.hmget }).toEqual({ hget: 3, hmget: 2 });
      expect((await client.log.getJob(job.id))?.hostId).toBe("pl-once-h");
      expect(await redis.hget(keys.placementClaims(), "pl-once-vm")).toBe("pl-once-h:256:1:1");
    } finally {
      await client.close();
      redis.disconnect();
    }
  });

  it("a pinned create whose VM holds a stale claim on a host of another class moves the claim there (the script asks for each class it needs)", async () => {
    const prefix = "pl-stale";
    const keys = new Keys(prefix);
    const redis = new Redis(local.url, { maxRetriesPerRequest: null });
    const client = new FleetClient({ redisUrl: local.url, prefix });
    try {
      const hosts = new HostRegistry(redis, keys);
      const ledger = new CapacityLedger(redis, keys);
      const x = hostStatus("pl-x", { labels: { zone: "x" } });
      for (const s of [x, hostStatus("pl-y", { labels: { zone: "y" } })]) {
        await ledger.setCapacity(s.hostId, 4096, 4);
        await hosts.heartbeat(s, 60_000);
      }
      // Room held by a name no VM record has (a create that died half-way, say).
      expect(await ledger.claim(["pl-x"], "pl-vm", 1024, 1)).toBe("pl-x");
      const job = await client.createVm(
        { name: "pl-vm", memoryMiB: 512, vcpus: 1, disks: [{ sizeGiB: 1 }] },
        { host: "pl-y" },
      );
      expect((await client.log.getJob(job.id))?.hostId).toBe("pl-y");
      expect(await ledger.claimants("pl-x")).toEqual([]);
      expect(await ledger.claimants("pl-y")).toEqual(["pl-vm"]);
      expect((await ledger.get("pl-x")).allocated).toEqual({ memoryMiB: 0, vcpus: 0 });
      expect((await ledger.get("pl-y")).allocated).toEqual({ memoryMiB: 512, vcpus: 1 });
      expect(await redis.zscore(keys.placementFree(hostClass(x)), "pl-x")).toBe("4096");
    } finally {
      await client.close();
      redis.disconnect();
    }
  });
});
