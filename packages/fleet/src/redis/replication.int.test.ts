import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { ReplicationBarrier, replicationError } from "./replication.js";

// The suite's Redis has no replica: every WAIT for one times out.
describe("ReplicationBarrier against a Redis without replicas", () => {
  test("with no replicas asked for, it neither writes nor waits", async ({ redis, prefix }) => {
    const barrier = new ReplicationBarrier(redis, `${prefix}:fence`, undefined);
    expect(barrier.enabled).toBe(false);
    await barrier.wait();
    const zero = new ReplicationBarrier(redis, `${prefix}:fence`, { minReplicas: 0, timeoutMs: 10 });
    await zero.wait();
    expect(await redis.exists(`${prefix}:fence`)).toBe(0);
  });

  test("answers REPLICATION_TIMEOUT (retryable) when too few replicas confirm, after writing the fence", async ({
    redis,
    prefix,
  }) => {
    const barrier = new ReplicationBarrier(redis, `${prefix}:fence`, { minReplicas: 1, timeoutMs: 50 });
    try {
      await expect(barrier.wait()).rejects.toMatchObject({
        code: "REPLICATION_TIMEOUT",
        retryable: true,
        message: expect.stringContaining("0 of 1"),
      });
      expect(await redis.exists(`${prefix}:fence`)).toBe(1);
    } finally {
      await barrier.close();
    }
  });

  test("callers arriving together share barriers: 12 callers, at most 2 WAITs", async ({ redis, prefix }) => {
    const barrier = new ReplicationBarrier(redis, `${prefix}:fence`, { minReplicas: 1, timeoutMs: 50 });
    try {
      await barrier.wait().catch(() => undefined); // the barrier's own connection is up
      await redis.config("RESETSTAT");
      const results = await Promise.allSettled(Array.from({ length: 12 }, () => barrier.wait()));
      expect(results.every((r) => r.status === "rejected")).toBe(true);
      const stats = await redis.info("commandstats");
      const calls = Number(/cmdstat_wait:calls=(\d+)/.exec(stats)?.[1] ?? 0);
      expect(calls).toBeGreaterThanOrEqual(1);
      expect(calls).toBeLessThanOrEqual(2);
    } finally {
      await barrier.close();
    }
  });
});

describe("replicationError", () => {
  test("turns Redis' NOREPLICAS refusal into REPLICATION_TIMEOUT and leaves other errors alone", () => {
    expect(replicationError(new Error("NOREPLICAS Not enough good replicas to write."))).toMatchObject({
      code: "REPLICATION_TIMEOUT",
      retryable: true,
    });
    expect(replicationError(new Error("ERR something else"))).toBeUndefined();
  });
});
