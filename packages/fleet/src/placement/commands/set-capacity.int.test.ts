import { describe, expect } from "vitest";
import { hostStatus } from "../../../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../../../test/fixtures/redis-test.js";
import { HostRegistry } from "../../hosts/host-registry.js";
import { Keys } from "../../redis/keys.js";
import { CapacityLedger } from "../capacity-ledger.js";
import { hostClass } from "../host-class.js";

// set-capacity-7.lua: a worker's capacity, its index score in step, and the one-time move from the old layout.
describe("set-capacity", () => {
  test("moves a running fleet's per-host alloc, claims and drain mark into the placement keys, once", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    // What a fleet before the placement index holds for a host.
    await redis.hset(keys.alloc("pl-old"), { capMem: 4096, capVcpus: 4, capDisk: 50, mem: 1536, vcpus: 2, disk: 3 });
    await redis.hset(keys.claims("pl-old"), { a: "1024:1:3", b: "512:1" });
    await redis.set(keys.drain("pl-old"), "1");

    const ledger = new CapacityLedger(redis, keys);
    await ledger.setCapacity("pl-old", 8192, 8);
    expect(await ledger.get("pl-old")).toEqual({
      capacity: { memoryMiB: 8192, vcpus: 8 },
      allocated: { memoryMiB: 1536, vcpus: 2 },
      disk: { capacityGiB: 50, allocatedGiB: 3 },
    });
    expect((await ledger.claimants("pl-old")).sort()).toEqual(["a", "b"]);
    expect(await redis.exists(keys.alloc("pl-old"), keys.claims("pl-old"), keys.drain("pl-old"))).toBe(0);
    expect(await redis.sismember(keys.placementDrained(), "pl-old")).toBe(1);

    // Once: a second call counts nothing twice.
    await ledger.setCapacity("pl-old", 8192, 8);
    expect((await ledger.get("pl-old")).allocated).toEqual({ memoryMiB: 1536, vcpus: 2 });

    // The moved claims release as any other.
    expect(await ledger.release("pl-old", "a")).toBe(true);
    expect(await ledger.get("pl-old")).toMatchObject({
      allocated: { memoryMiB: 512, vcpus: 1 },
      disk: { allocatedGiB: 0 },
    });
    expect(await ledger.release("pl-old", "b")).toBe(true);
    expect((await ledger.get("pl-old")).allocated).toEqual({ memoryMiB: 0, vcpus: 0 });
  });

  test("keeps the host's free-room score in step, with a ledger that never saw the host's class", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const status = hostStatus("pl-h");
    await new CapacityLedger(redis, keys).setCapacity("pl-h", 4096, 4);
    await new HostRegistry(redis, keys).heartbeat(status, 30_000);
    const free = keys.placementFree(hostClass(status));
    expect(await redis.zscore(free, "pl-h")).toBe("4096");
    const ledger = new CapacityLedger(redis, keys);
    await ledger.claim(["pl-h"], "vm", 1000, 1);
    await new CapacityLedger(redis, keys).setCapacity("pl-h", 2048, 4, 20);
    expect(await redis.zscore(free, "pl-h")).toBe("1048");
    expect((await ledger.get("pl-h")).disk.capacityGiB).toBe(20);
    // Leaving the disk out leaves it as it was.
    await ledger.setCapacity("pl-h", 2048, 4);
    expect((await ledger.get("pl-h")).disk.capacityGiB).toBe(20);
  });
});
