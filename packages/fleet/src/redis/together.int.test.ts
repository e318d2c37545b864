import { Redis } from "ioredis";
import { describe, expect, vi } from "vitest";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { sendTogether } from "./together.js";

describe("sendTogether", () => {
  test("the commands sent inside leave in one write, and each gets its own answer", async ({ redisUrl, prefix }) => {
    // No auto-pipelining: every command is a write of its own unless corked.
    const redis = new Redis(redisUrl, { enableAutoPipelining: false });
    try {
      await redis.ping();
      const writes = () => {
        const stream = redis.stream as unknown as { _write: () => void; _writev: () => void };
        return { one: vi.spyOn(stream, "_write"), many: vi.spyOn(stream, "_writev") };
      };
      // Apart: one write per command.
      let spy = writes();
      await Promise.all(Array.from({ length: 20 }, (_, i) => redis.set(`${prefix}:a${i}`, String(i))));
      expect(spy.one.mock.calls.length + spy.many.mock.calls.length).toBeGreaterThan(1);
      expect(await redis.get(`${prefix}:a19`)).toBe("19");
      vi.restoreAllMocks();

      // Together: one writev, even for commands sent after an await (as a BullMQ add sends its own).
      spy = writes();
      const answers = await sendTogether(redis, () =>
        Promise.all(
          Array.from({ length: 20 }, async (_, i) => {
            await Promise.resolve();
            return redis.incrby(`${prefix}:b${i}`, i);
          }),
        ),
      );
      expect(answers).toEqual(Array.from({ length: 20 }, (_, i) => i));
      expect(spy.one.mock.calls.length).toBe(0);
      expect(spy.many.mock.calls.map((c) => (c as unknown as [unknown[]])[0].length)).toEqual([20]);
    } finally {
      vi.restoreAllMocks();
      redis.disconnect();
    }
  });

  test("a connection not ready yet: the commands wait in ioredis's queue as always", async ({ redisUrl, prefix }) => {
    const redis = new Redis(redisUrl, { lazyConnect: true });
    try {
      expect(redis.status).toBe("wait");
      const answers = await sendTogether(redis, () =>
        Promise.all([redis.set(`${prefix}:c`, "1"), redis.get(`${prefix}:c`)]),
      );
      expect(answers).toEqual(["OK", "1"]);
    } finally {
      redis.disconnect();
    }
  });
});
