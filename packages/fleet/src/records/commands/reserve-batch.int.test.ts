import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../../test/fixtures/redis-test.js";
import { Keys } from "../../redis/keys.js";
import { LuaCommand } from "../../redis/lua.js";
import { BatchStore } from "../batches.js";

const reserve = new LuaCommand(new URL("./reserve-batch.lua", import.meta.url));
const HOUR_MS = 3_600_000;

/** The command's KEYS and ARGV (see the file's header). */
function args(keys: Keys, id: string, max: number, known: string[], now: number, ttlMs = 24 * HOUR_MS) {
  return [
    [
      keys.tenantBatches("t1"),
      keys.batch(id),
      ...known.flatMap((b) => [keys.batch(b), keys.batchItems(b), keys.batchEvents(b)]),
    ],
    [now, ttlMs, max, id, 86_400, known.length, ...known, "batchId", id, "total", "1", "ended", "0"],
  ] as const;
}

describe("records/commands/reserve-batch.lua", () => {
  test("records a batch while the tenant has room; full: asks for the set's keys first, then evicts only its oldest ended (or gone) batches; all running: 0", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const set = keys.tenantBatches("t1");
    const now = Date.now();
    // Three stored batches: b1 ended, b2 running, b3 gone (its record expired).
    await redis.zadd(set, now - 3000, "b1", now - 2000, "b2", now - 1000, "b3");
    await redis.hset(keys.batch("b1"), "total", "2", "ended", "2");
    await redis.rpush(keys.batchItems("b1"), "{}");
    await redis.xadd(keys.batchEvents("b1"), "*", "e", "{}");
    await redis.hset(keys.batch("b2"), "total", "2", "ended", "1");
    await redis.xadd(keys.batchEvents("b2"), "*", "e", "{}");

    // Room: recorded without any other batch's keys.
    expect(await reserve.run(redis, ...args(keys, "b4", 5, [], now))).toBe(1);
    expect(await redis.hgetall(keys.batch("b4"))).toEqual({ batchId: "b4", total: "1", ended: "0" });
    expect(await redis.ttl(keys.batch("b4"))).toBeGreaterThan(86_000);

    // Full at 4 and no keys passed: the set's ids, oldest first; nothing written.
    expect(await reserve.run(redis, ...args(keys, "b5", 4, [], now))).toEqual(["ids", "b1", "b2", "b3", "b4"]);
    expect(await redis.exists(keys.batch("b5"), keys.batch("b1"))).toBe(1);
    // Some keys missing: asked again.
    expect(await reserve.run(redis, ...args(keys, "b5", 4, ["b1", "b2"], now))).toEqual([
      "ids",
      "b1",
      "b2",
      "b3",
      "b4",
    ]);
    // With every key: the oldest ended one (b1) goes with its items and events, and only it.
    expect(await reserve.run(redis, ...args(keys, "b5", 4, ["b1", "b2", "b3", "b4"], now))).toBe(1);
    expect(await redis.exists(keys.batch("b1"), keys.batchItems("b1"), keys.batchEvents("b1"))).toBe(0);
    expect(await redis.zrange(set, 0, -1)).toEqual(["b2", "b3", "b4", "b5"]);

    // Full at 3: b3 (gone) leaves; b2, b4, b5 run: still full, the new one is refused.
    const known = ["b2", "b3", "b4", "b5"];
    expect(await reserve.run(redis, ...args(keys, "b6", 3, known, now))).toBe(0);
    expect(await redis.exists(keys.batch("b6"))).toBe(0);
    expect(await redis.zrange(set, 0, -1)).toEqual(["b2", "b4", "b5"]);
    expect(await redis.exists(keys.batch("b2"), keys.batchEvents("b2"))).toBe(2);
  });

  test("batches older than the TTL leave the set before counting", async ({ redis, prefix }) => {
    const keys = new Keys(prefix);
    const set = keys.tenantBatches("t1");
    const now = Date.now();
    await redis.zadd(set, now - 2 * HOUR_MS, "old");
    await redis.hset(keys.batch("old"), "total", "1", "ended", "0");
    expect(await reserve.run(redis, ...args(keys, "new", 1, [], now, HOUR_MS))).toBe(1);
    expect(await redis.zrange(set, 0, -1)).toEqual(["new"]);
  });

  test("BatchStore.create passes the keys the script asks for: an ended batch makes room; all running is QUOTA_EXCEEDED", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const store = new BatchStore(redis, keys);
    await store.create("a", 1, "t1", 2);
    await store.create("b", 1, "t1", 2);
    await store.finish("a", [{ vm: "x", jobId: "j" }], 1);
    await store.create("c", 1, "t1", 2);
    expect(await redis.zrange(keys.tenantBatches("t1"), 0, -1)).toEqual(["b", "c"]);
    expect(await redis.exists(keys.batch("a"), keys.batchItems("a"))).toBe(0);
    await expect(store.create("d", 1, "t1", 2)).rejects.toMatchObject({
      code: "QUOTA_EXCEEDED",
      field: "quota.batches",
    });
  });
});
