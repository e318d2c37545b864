import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../../test/fixtures/redis-test.js";
import { Keys } from "../../redis/keys.js";
import { LuaCommand } from "../../redis/lua.js";
import { QuotaLedger } from "../quota.js";

const release = new LuaCommand(new URL("./release-quota-2.lua", import.meta.url));

describe("admission/commands/release-quota-2.lua", () => {
  test("gives a VM's held quota back once; a second release (or an unknown VM) changes nothing and returns 0", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const usage = keys.usage("t1");
    const perVm = keys.usageVms("t1");
    await redis.hset(usage, "vms", "2", "mem", "3072", "vcpus", "3", "disk", "30");
    await redis.hset(perVm, "a", "1024:1:10", "b", "2048:2");
    expect(await release.run(redis, [usage, perVm], ["a"])).toBe(1);
    expect(await redis.hgetall(usage)).toEqual({ vms: "1", mem: "2048", vcpus: "2", disk: "20" });
    expect(await redis.hgetall(perVm)).toEqual({ b: "2048:2" });
    expect(await release.run(redis, [usage, perVm], ["a"])).toBe(0);
    expect(await release.run(redis, [usage, perVm], ["nobody"])).toBe(0);
    expect(await redis.hgetall(usage)).toEqual({ vms: "1", mem: "2048", vcpus: "2", disk: "20" });
    // A VM held with no disk part gives back no disk.
    expect(await release.run(redis, [usage, perVm], ["b"])).toBe(1);
    expect(await redis.hgetall(usage)).toEqual({ vms: "0", mem: "0", vcpus: "0", disk: "20" });
  });

  test("QuotaLedger.release runs it on the tenant's keys", async ({ redis, prefix }) => {
    const keys = new Keys(prefix);
    await redis.hset(keys.usage("t1"), "vms", "1", "mem", "512", "vcpus", "1", "disk", "0");
    await redis.hset(keys.usageVms("t1"), "a", "512:1");
    const ledger = new QuotaLedger(redis, keys);
    expect(await ledger.release("t1", "a")).toBe(true);
    expect(await ledger.release("t1", "a")).toBe(false);
    expect(await ledger.usage("t1")).toEqual({ vms: 0, memoryMiB: 0, vcpus: 0, diskGiB: 0 });
  });

  test("takes exactly 2 keys", async ({ redis }) => {
    expect(() => release.run(redis, ["only-one"], ["a"])).toThrow("release-quota takes 2 keys, got 1");
  });
});
