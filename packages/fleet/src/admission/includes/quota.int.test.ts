import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../../test/fixtures/redis-test.js";
import { Keys } from "../../redis/keys.js";
import { runScript } from "../../redis/scripts.js";
import { QUOTA_LUA } from "../quota.js";

// The include's two functions, called as the admission script calls them.
// KEYS: usage, per-VM. ARGV: vm, mem, vcpus, disk, then the limits vms, mem, vcpus, disk (-1: none).
const CHECK_THEN_TAKE = `${QUOTA_LUA}
local mem, vcpus, disk = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local over = quota_check(KEYS[1], KEYS[2], ARGV[1], mem, vcpus, tonumber(ARGV[5]), tonumber(ARGV[6]),
  tonumber(ARGV[7]), disk, tonumber(ARGV[8]))
if over == 'ok' then quota_take(KEYS[1], KEYS[2], ARGV[1], mem, vcpus, disk) end
return over`;

describe("admission/includes/quota.lua", () => {
  test("quota_check names the first quota a VM would exceed; quota_take counts a VM once", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const usage = keys.usage("t1");
    const perVm = keys.usageVms("t1");
    const admit = (vm: string, mem: number, vcpus: number, disk: number, limits: number[]) =>
      runScript(redis, CHECK_THEN_TAKE, 2, usage, perVm, vm, mem, vcpus, disk, ...limits);
    expect(await admit("a", 1024, 1, 10, [2, 2048, 2, 20])).toBe("ok");
    expect(await redis.hgetall(usage)).toEqual({ vms: "1", mem: "1024", vcpus: "1", disk: "10" });
    expect(await redis.hget(perVm, "a")).toBe("1024:1:10");
    // The same VM again: not counted twice, whatever the limits.
    expect(await admit("a", 1024, 1, 10, [1, 1024, 1, 10])).toBe("ok");
    expect(await redis.hget(usage, "vms")).toBe("1");
    expect(await admit("b", 1024, 1, 11, [2, 2048, 2, 20])).toBe("diskGiB");
    expect(await admit("b", 1024, 2, 0, [2, 2048, 2, 20])).toBe("vcpus");
    expect(await admit("b", 2048, 1, 0, [2, 2048, 2, 20])).toBe("memoryMiB");
    expect(await admit("b", 1024, 1, 0, [1, -1, -1, -1])).toBe("vms");
    // No disk: held as "mem:vcpus".
    expect(await admit("b", 1024, 1, 0, [-1, -1, -1, -1])).toBe("ok");
    expect(await redis.hget(perVm, "b")).toBe("1024:1");
    expect(await redis.hgetall(usage)).toEqual({ vms: "2", mem: "2048", vcpus: "2", disk: "10" });
  });
});
