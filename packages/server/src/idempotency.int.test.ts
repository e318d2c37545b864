import { Keys } from "@virtfleet/fleet";
import { describe, expect } from "vitest";
import { redisTest as test } from "../../../test/fixtures/redis-test.js";
import { IdempotencyStore } from "./idempotency.js";

describe("IdempotencyStore", () => {
  test("a tenant keeps at most maxKeys answers: storing one more drops its oldest; other tenants are untouched", async ({
    prefix,
    redis,
  }) => {
    const keys = new Keys(prefix);
    const store = new IdempotencyStore(redis, keys, 3600, 3);
    const answer = { status: 202, body: { ok: true } };
    await store.begin("globex", "g1", "f");
    await store.complete("globex", "g1", "f", answer);
    for (const k of ["k1", "k2", "k3", "k4", "k5"]) {
      expect(await store.begin("acme", k, `f-${k}`)).toBeUndefined();
      await store.complete("acme", k, `f-${k}`, answer);
    }
    expect(await redis.keys(`${prefix}:idem:acme:*`)).toHaveLength(3);
    expect(await redis.exists(keys.idempotency("acme", "k1"), keys.idempotency("acme", "k2"))).toBe(0);
    expect(await store.begin("acme", "k5", "f-k5")).toEqual(answer);
    expect(await store.begin("globex", "g1", "f")).toEqual(answer);
  });
});
