import { describe, expect } from "vitest";
import { hostStatus } from "../../../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../../../test/fixtures/redis-test.js";
import { HostRegistry } from "../../hosts/host-registry.js";
import { Keys } from "../../redis/keys.js";
import { CapacityLedger } from "../capacity-ledger.js";
import { hostClass } from "../host-class.js";

// host-index-7.lua: a heartbeat publishes the status, the alive score, and files the host in its class's index.
describe("host-index", () => {
  test("files a host under its class with its free memory, up until now + TTL, and moves it when its class changes", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const hosts = new HostRegistry(redis, keys);
    const ledger = new CapacityLedger(redis, keys);
    await ledger.setCapacity("pl-h1", 4096, 4);
    expect(await ledger.claim(["pl-h1"], "vm", 1024, 1)).toBeUndefined(); // not up yet
    const before = Date.now();
    const plain = hostStatus("pl-h1");
    await hosts.heartbeat(plain, 30_000);
    const a = hostClass(plain);
    expect(await redis.hget(keys.placementHosts(), "pl-h1.class")).toBe(a);
    expect(await redis.zscore(keys.placementFree(a), "pl-h1")).toBe("4096");
    const alive = Number(await redis.zscore(keys.placementAlive(), "pl-h1"));
    expect(alive).toBeGreaterThanOrEqual(before + 30_000 - 1000);
    expect(alive).toBeLessThanOrEqual(Date.now() + 30_000 + 1000);
    expect(await redis.pttl(keys.hostStatus("pl-h1"))).toBeGreaterThan(0);
    expect(JSON.parse((await redis.hget(keys.hosts(), "pl-h1")) ?? "{}").hostId).toBe("pl-h1");

    // Claims keep the score in step.
    expect(await ledger.claim(["pl-h1"], "vm", 1024, 1)).toBe("pl-h1");
    expect(await redis.zscore(keys.placementFree(a), "pl-h1")).toBe("3072");

    // New labels: another class. A registry that never saw the host (no cached class) is told the
    // stored class by the script and moves it from there.
    const labelled = hostStatus("pl-h1", { labels: { zone: "b" } });
    const b = hostClass(labelled);
    expect(b).not.toBe(a);
    await new HostRegistry(redis, keys).heartbeat(labelled, 30_000);
    expect(await redis.zscore(keys.placementFree(a), "pl-h1")).toBeNull();
    expect(await redis.zscore(keys.placementFree(b), "pl-h1")).toBe("3072");
    expect(await redis.hget(keys.placementHosts(), "pl-h1.class")).toBe(b);

    // Draining on its own: recorded for the claim scripts, which skip it.
    await hosts.heartbeat({ ...labelled, draining: true }, 30_000);
    expect(await redis.hget(keys.placementHosts(), "pl-h1.draining")).toBe("1");
    expect(await ledger.claim(["pl-h1"], "other", 64, 1)).toBeUndefined();
    await hosts.heartbeat(labelled, 30_000);
    expect(await ledger.claim(["pl-h1"], "other", 64, 1)).toBe("pl-h1");

    // Down: out of the alive set; removed: out of the index.
    await hosts.markDown("pl-h1");
    expect(await redis.zscore(keys.placementAlive(), "pl-h1")).toBeNull();
    expect(await ledger.claim(["pl-h1"], "third", 64, 1)).toBeUndefined();
    await hosts.remove("pl-h1");
    expect(await redis.zscore(keys.placementFree(b), "pl-h1")).toBeNull();
    expect(await hosts.list()).toEqual([]);
  });

  test("list() reads every host in a few commands: status, up, drain and allocation", async ({ redis, prefix }) => {
    const keys = new Keys(prefix);
    const hosts = new HostRegistry(redis, keys);
    const ledger = new CapacityLedger(redis, keys);
    for (const id of ["pl-b", "pl-a", "pl-c"]) {
      await ledger.setCapacity(id, 2048, 2, 100);
      await hosts.heartbeat(hostStatus(id), 30_000);
    }
    await ledger.claim(["pl-a"], "vm", 512, 1, { diskGiB: 7 });
    await hosts.drain("pl-b");
    await hosts.markDown("pl-c");
    const list = await hosts.list();
    expect(list.map((h) => [h.status.hostId, h.up, h.draining])).toEqual([
      ["pl-a", true, false],
      ["pl-b", true, true],
      ["pl-c", false, false],
    ]);
    expect(list[0]?.allocation).toEqual({
      capacity: { memoryMiB: 2048, vcpus: 2 },
      allocated: { memoryMiB: 512, vcpus: 1 },
      disk: { capacityGiB: 100, allocatedGiB: 7 },
    });
    expect(await hosts.get("pl-a")).toEqual(list[0]);
    expect(await hosts.get("pl-b")).toEqual(list[1]);
    await hosts.drain("pl-b", false);
    expect((await hosts.get("pl-b"))?.draining).toBe(false);
  });
});
