import { Keys, LuaCommand } from "@virtfleet/fleet";
import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";

const TRACK = new LuaCommand(new URL("./track-idempotency-1.lua", import.meta.url));

describe("track-idempotency-1.lua", () => {
  test("adds the answer's key, keeps the set's TTL, and returns (and drops from the set) only the oldest beyond the limit", async ({
    prefix,
    redis,
  }) => {
    const set = new Keys(prefix).idempotencyKeys("acme");
    expect(await TRACK.run(redis, [set], ["a", 1, 2, 600])).toEqual([]);
    expect(await TRACK.run(redis, [set], ["b", 2, 2, 600])).toEqual([]);
    expect(await TRACK.run(redis, [set], ["c", 3, 2, 600])).toEqual(["a"]);
    expect(await redis.zrange(set, 0, -1)).toEqual(["b", "c"]);
    const ttl = await redis.ttl(set);
    expect(ttl).toBeGreaterThan(590);
    expect(ttl).toBeLessThanOrEqual(600);
    // A lower limit drops several at once, oldest first; the answers themselves are the caller's to delete.
    expect(await TRACK.run(redis, [set], ["d", 4, 1, 600])).toEqual(["b", "c"]);
    expect(await redis.zrange(set, 0, -1)).toEqual(["d"]);
  });

  test("takes exactly one key", async ({ redis }) => {
    expect(() => TRACK.run(redis, [], ["a", 1, 2, 600])).toThrow(/takes 1 keys/);
  });
});
