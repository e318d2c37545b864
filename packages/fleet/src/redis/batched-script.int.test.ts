import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { BatchedScript } from "./scripts.js";

// Adds ARGV[1] to a counter and returns the new value; a negative amount returns false, "boom" raises.
const ADD = {
  lib: "local function bump(key, n) return redis.call('INCRBY', key, n) end",
  body: `
if ARGV[1] == 'boom' then return redis.call('NOSUCHCOMMAND') end
local n = tonumber(ARGV[1])
if n < 0 then return false end
return { bump(KEYS[1], n), redis.call('GET', KEYS[2]) or '' }
`,
};

describe("BatchedScript against real Redis", () => {
  test("concurrent calls go to Redis as a few script runs, and each gets its own answer", async ({ redis, prefix }) => {
    const script = new BatchedScript(redis, ADD, 64);
    await redis.set(`${prefix}:label`, "x");
    // Both forms of the script loaded (the first use of each sends its source), then count runs.
    await Promise.all([
      script.call([`${prefix}:w`, `${prefix}:w2`], ["0"]),
      script.call([`${prefix}:w`, `${prefix}:w2`], ["0"]),
    ]);
    await script.call([`${prefix}:w`, `${prefix}:w2`], ["0"]);
    await redis.config("RESETSTAT");
    const answers = await Promise.all(
      Array.from({ length: 300 }, (_, i) => script.call([`${prefix}:n:${i % 3}`, `${prefix}:label`], [String(i)])),
    );
    // Each counter got the amounts of its calls, in the order they were made.
    const expected = [0, 0, 0];
    answers.forEach((answer, i) => {
      expected[i % 3] = (expected[i % 3] as number) + i;
      expect(answer).toEqual([expected[i % 3], "x"]);
    });
    const stats = await redis.info("commandstats");
    const runs =
      Number(/cmdstat_evalsha:calls=(\d+)/.exec(stats)?.[1] ?? 0) +
      Number(/cmdstat_eval:calls=(\d+)/.exec(stats)?.[1] ?? 0);
    expect(runs).toBeGreaterThan(0);
    expect(runs).toBeLessThanOrEqual(Math.ceil(300 / 64) + 2);
  });

  test("a body that returns false answers null; a lone call runs the script as is", async ({ redis, prefix }) => {
    const script = new BatchedScript(redis, ADD);
    expect(await script.call([`${prefix}:a`, `${prefix}:b`], ["-1"])).toBeNull();
    const [neg, pos] = await Promise.all([
      script.call([`${prefix}:a`, `${prefix}:b`], ["-5"]),
      script.call([`${prefix}:a`, `${prefix}:b`], ["5"]),
    ]);
    expect(neg).toBeNull();
    expect(pos).toEqual([5, ""]);
  });

  test("an error in a batch rejects every call of that batch, and later calls still work", async ({
    redis,
    prefix,
  }) => {
    const script = new BatchedScript(redis, ADD);
    const results = await Promise.allSettled([
      script.call([`${prefix}:a`, `${prefix}:b`], ["1"]),
      script.call([`${prefix}:a`, `${prefix}:b`], ["boom"]),
    ]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    expect(await script.call([`${prefix}:c`, `${prefix}:b`], ["2"])).toEqual([2, ""]);
  });
});
