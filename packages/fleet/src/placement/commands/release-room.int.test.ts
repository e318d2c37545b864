import { describe, expect } from "vitest";
import { hostStatus } from "../../../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../../../test/fixtures/redis-test.js";
import { HostRegistry } from "../../hosts/host-registry.js";
import { Keys } from "../../redis/keys.js";
import { CapacityLedger } from "../capacity-ledger.js";
import { hostClass } from "../host-class.js";

// release-room-3.lua: gives a VM's room back once, on its own host only, and keeps the index in step.
describe("release-room", () => {
  test("releases once, only on the VM's host, and gives the room back to the index", async ({ redis, prefix }) => {
    const keys = new Keys(prefix);
    const status = hostStatus("pl-r");
    await new CapacityLedger(redis, keys).setCapacity("pl-r", 4096, 4, 100);
    await new HostRegistry(redis, keys).heartbeat(status, 30_000);
    await new CapacityLedger(redis, keys).setCapacity("pl-s", 4096, 4);
    const free = keys.placementFree(hostClass(status));
    const ledger = new CapacityLedger(redis, keys);
    expect(await ledger.claim(["pl-r"], "vm", 1024, 2, { diskGiB: 9 })).toBe("pl-r");
    expect(await redis.zscore(free, "pl-r")).toBe("3072");

    // Another host, or a VM holding nothing: nothing is released.
    expect(await ledger.release("pl-s", "vm")).toBe(false);
    expect(await ledger.release("pl-r", "stranger")).toBe(false);
    expect((await ledger.get("pl-r")).allocated).toEqual({ memoryMiB: 1024, vcpus: 2 });

    // A ledger that never saw the host's class learns it from the script and runs again.
    const fresh = new CapacityLedger(redis, keys);
    expect(await fresh.release("pl-r", "vm")).toBe(true);
    expect(await fresh.release("pl-r", "vm")).toBe(false);
    expect(await ledger.get("pl-r")).toEqual({
      capacity: { memoryMiB: 4096, vcpus: 4 },
      allocated: { memoryMiB: 0, vcpus: 0 },
      disk: { capacityGiB: 100, allocatedGiB: 0 },
    });
    expect(await redis.zscore(free, "pl-r")).toBe("4096");
    expect(await redis.hlen(keys.placementClaims())).toBe(0);
  });
});
