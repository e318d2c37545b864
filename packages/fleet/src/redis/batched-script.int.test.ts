import { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { privateRedis } from "../../../../test/fixtures/private-redis.js";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { BatchedScript } from "./scripts.js";

// A Redis of this file's own, for counting its commands (INFO commandstats) undisturbed.
const local = privateRedis();

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

  test("with fullAtOnce a full batch goes to Redis at once, before what the caller sends next in the same turn", async ({
    redis,
    prefix,
  }) => {
    const mark = `${prefix}:mark`;
    /** 10 calls (one full batch), a SET written at once on the same connection, 5 more calls. */
    const round = async (script: BatchedScript) => {
      // Loaded first: a script's first run (NOSCRIPT, then its source) would answer later.
      await Promise.all(Array.from({ length: 10 }, () => script.call([`${prefix}:w`, mark], ["0"])));
      await redis.del(mark);
      const first = Array.from({ length: 10 }, () => script.call([`${prefix}:n`, mark], ["1"]));
      const set = redis.set(mark, "late");
      const rest = Array.from({ length: 5 }, () => script.call([`${prefix}:n`, mark], ["1"]));
      await set;
      return (await Promise.all([...first, ...rest])).map((a) => (a as [number, string])[1]);
    };
    expect(await round(new BatchedScript(redis, ADD, 10, true))).toEqual([
      ...Array.from({ length: 10 }, () => ""),
      ...Array.from({ length: 5 }, () => "late"),
    ]);
    // By default every batch waits for the end of the turn: the SET runs first.
    expect(await round(new BatchedScript(redis, ADD, 10))).toEqual(Array.from({ length: 15 }, () => "late"));
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

  test("with auto-pipelining, a full batch runs after the commands queued before it in the same tick; a flushed script cache is loaded again", async ({
    redisUrl,
    prefix,
  }) => {
    const redis = new Redis(redisUrl, { enableAutoPipelining: true });
    try {
      const script = new BatchedScript(redis, ADD, 8);
      await redis.set(`${prefix}:label`, "x");
      const label = redis.set(`${prefix}:label`, "y");
      // Sixteen calls in this tick: two full batches, each sent on its own.
      const answers = await Promise.all(
        Array.from({ length: 16 }, () => script.call([`${prefix}:n`, `${prefix}:label`], ["1"])),
      );
      await label;
      expect(answers.map((a) => (a as [number, string])[1])).toEqual(Array(16).fill("y"));
      expect(answers.map((a) => (a as [number, string])[0])).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
      await redis.script("FLUSH");
      const again = await Promise.all(
        Array.from({ length: 3 }, () => script.call([`${prefix}:n`, `${prefix}:label`], ["1"])),
      );
      expect(again).toEqual([
        [17, "y"],
        [18, "y"],
        [19, "y"],
      ]);
    } finally {
      redis.disconnect();
    }
  });
});

describe("BatchedScript's first run", () => {
  test("sends the source at once (one EVAL, no NOSCRIPT answer to wait for), later runs only its SHA", async () => {
    const redis = new Redis(local.url);
    try {
      await redis.config("RESETSTAT");
      const script = new BatchedScript(redis, ADD);
      const stats = async (name: string) => {
        const line = new RegExp(`cmdstat_${name}:calls=(\\d+),.*failed_calls=(\\d+)`).exec(
          await redis.info("commandstats"),
        );
        return { calls: Number(line?.[1] ?? 0), failed: Number(line?.[2] ?? 0) };
      };
      // Both forms: a lone call, then a batch of two.
      expect(await script.call(["first:a", "first:b"], ["1"])).toEqual([1, ""]);
      expect(
        await Promise.all([script.call(["first:a", "first:b"], ["1"]), script.call(["first:a", "first:b"], ["1"])]),
      ).toEqual([
        [2, ""],
        [3, ""],
      ]);
      expect(await stats("eval")).toEqual({ calls: 2, failed: 0 });
      expect(await stats("evalsha")).toEqual({ calls: 0, failed: 0 });
      await script.call(["first:a", "first:b"], ["1"]);
      await Promise.all([script.call(["first:a", "first:b"], ["1"]), script.call(["first:a", "first:b"], ["1"])]);
      expect(await stats("eval")).toEqual({ calls: 2, failed: 0 });
      expect(await stats("evalsha")).toEqual({ calls: 2, failed: 0 });
    } finally {
      redis.disconnect();
    }
  });
});
