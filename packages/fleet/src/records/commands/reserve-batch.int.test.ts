import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../../test/fixtures/redis-test.js";
import { Keys } from "../../redis/keys.js";
import { LuaCommand } from "../../redis/lua.js";

const reserve = new LuaCommand(new URL("./reserve-batch-2.lua", import.meta.url));
const HOUR_MS = 3_600_000;

describe("records/commands/reserve-batch-2.lua", () => {
  test("records a batch while the tenant has room; when full, evicts only its oldest ended (or gone) batches; all running: 0, nothing written", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const set = keys.tenantBatches("t1");
    const now = Date.now();
    const run = (id: string, max: number) =>
      reserve.run(
        redis,
        [set, keys.batch(id)],
        [keys.batch(""), now, 24 * HOUR_MS, max, id, 86_400, "batchId", id, "total", "1", "ended", "0"],
      );
    // Three stored batches: b1 ended, b2 running, b3 gone (its record expired).
    await redis.zadd(set, now - 3000, "b1", now - 2000, "b2", now - 1000, "b3");
    await redis.hset(keys.batch("b1"), "total", "2", "ended", "2");
    await redis.rpush(keys.batchItems("b1"), "{}");
    await redis.xadd(keys.batchEvents("b1"), "*", "e", "{}");
    await redis.hset(keys.batch("b2"), "total", "2", "ended", "1");
    await redis.xadd(keys.batchEvents("b2"), "*", "e", "{}");

    // Room without evicting.
    expect(await run("b4", 5)).toBe(1);
    expect(await redis.hgetall(keys.batch("b4"))).toEqual({ batchId: "b4", total: "1", ended: "0" });
    expect(await redis.ttl(keys.batch("b4"))).toBeGreaterThan(86_000);
    expect(await redis.exists(keys.batch("b1"))).toBe(1);

    // Full at 4: the oldest ended one (b1) goes with its items and events, and only it.
    expect(await run("b5", 4)).toBe(1);
    expect(await redis.exists(keys.batch("b1"), keys.batchItems("b1"), keys.batchEvents("b1"))).toBe(0);
    expect(await redis.zrange(set, 0, -1)).toEqual(["b2", "b3", "b4", "b5"]);

    // Full at 3: b3 (gone) and, to make room, b4 (0 of 1 ended) is running: b3 only, then b4 stays… still full at 3.
    expect(await run("b6", 3)).toBe(0);
    expect(await redis.exists(keys.batch("b6"))).toBe(0);
    expect(await redis.zrange(set, 0, -1)).toEqual(["b2", "b4", "b5"]);
    // The running batches kept everything.
    expect(await redis.exists(keys.batch("b2"), keys.batchEvents("b2"))).toBe(2);
  });

  test("batches older than the TTL leave the set before counting", async ({ redis, prefix }) => {
    const keys = new Keys(prefix);
    const set = keys.tenantBatches("t1");
    const now = Date.now();
    await redis.zadd(set, now - 2 * HOUR_MS, "old");
    await redis.hset(keys.batch("old"), "total", "1", "ended", "0");
    const ok = await reserve.run(
      redis,
      [set, keys.batch("new")],
      [keys.batch(""), now, HOUR_MS, 1, "new", 3600, "total", "1"],
    );
    expect(ok).toBe(1);
    expect(await redis.zrange(set, 0, -1)).toEqual(["new"]);
  });
});
