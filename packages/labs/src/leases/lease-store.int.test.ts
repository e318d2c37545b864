import { VirtfleetError } from "@virtfleet/core";
import { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { LabKeys } from "../keys.js";
import { LeaseStore, type NewLease } from "./lease-store.js";

const HOUR = 3_600_000;
const claim = (target: string, ttlMs: number, maxLifetimeMs = 24 * HOUR): NewLease => ({
  kind: "claim",
  target,
  pool: "ci",
  ttlMs,
  maxLifetimeMs,
});

/** The error `promise` rejects with (fails the test when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<VirtfleetError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(VirtfleetError);
    return error as VirtfleetError;
  }
  throw new Error("expected a rejection");
}

describe("LeaseStore", () => {
  test("create caps the first expiry at the maximum lifetime", async ({ redis, prefix }) => {
    const leases = new LeaseStore(redis, new LabKeys(prefix));
    const now = Date.now();
    const lease = await leases.create(claim("ci-aaaa", 2 * HOUR, HOUR), now);
    expect(Date.parse(lease.expiresAt)).toBe(now + HOUR);
    expect(lease.maxExpiresAt).toBe(lease.expiresAt);
    expect(lease).toMatchObject({ kind: "claim", target: "ci-aaaa", pool: "ci" });
    expect(await leases.get(lease.id)).toEqual(lease);
  });

  test("extend resets the lease from now, never past maxExpiresAt", async ({ redis, prefix }) => {
    const leases = new LeaseStore(redis, new LabKeys(prefix));
    const lease = await leases.create(claim("ci-bbbb", 60_000, 2 * HOUR));
    const before = Date.now();
    const extended = await leases.extend(lease.id, HOUR);
    expect(Date.parse(extended.expiresAt)).toBeGreaterThanOrEqual(before + HOUR);
    expect(Date.parse(extended.expiresAt)).toBeLessThan(Date.parse(lease.maxExpiresAt));

    const capped = await leases.extend(lease.id, 10 * HOUR);
    expect(capped.expiresAt).toBe(lease.maxExpiresAt);
    // The expiry set agrees with the hash: the reaper sees the capped time.
    expect(Number(await redis.zscore(new LabKeys(prefix).leases(), lease.id))).toBe(Date.parse(lease.maxExpiresAt));
  });

  test("extend of an expired lease, an unknown one or another tenant's is NOT_FOUND", async ({ redis, prefix }) => {
    const keys = new LabKeys(prefix);
    const leases = new LeaseStore(redis, keys);
    const expired = await leases.create(claim("ci-cccc", 1000), Date.now() - 5000);
    const error = await rejection(leases.extend(expired.id, HOUR));
    expect(error.code).toBe("NOT_FOUND");
    expect(error.field).toBe("leaseId");
    // Nothing changed: it is still due for the reaper at its old time.
    expect(Number(await redis.zscore(keys.leases(), expired.id))).toBe(Date.parse(expired.expiresAt));

    // Taken by the reaper (no longer in the expiry set): still NOT_FOUND, not revived.
    await leases.takeDue();
    expect((await rejection(leases.extend(expired.id, HOUR))).code).toBe("NOT_FOUND");
    expect(await redis.zscore(keys.leases(), expired.id)).toBeNull();

    expect((await rejection(leases.extend("lease-0123456789abcdef", HOUR))).code).toBe("NOT_FOUND");
    expect((await rejection(leases.extend("../../etc", HOUR))).code).toBe("NOT_FOUND");
    const acme = await leases.create({ ...claim("ci-dddd", HOUR), tenant: "acme" });
    expect((await rejection(leases.extend(acme.id, HOUR, { tenant: "blue" }))).code).toBe("NOT_FOUND");
    expect(await leases.get(acme.id, { tenant: "blue" })).toBeUndefined();
    expect((await leases.extend(acme.id, 2 * HOUR, { tenant: "acme" })).id).toBe(acme.id);
  });

  test("takeDue hands each due lease to exactly one of many concurrent callers", async ({
    redis,
    redisUrl,
    prefix,
  }) => {
    const keys = new LabKeys(prefix);
    const past = Date.now() - 60_000;
    const seed = new LeaseStore(redis, keys);
    const due = await Promise.all(Array.from({ length: 60 }, (_, i) => seed.create(claim(`ci-due${i}`, 1000), past)));
    const live = await seed.create(claim("ci-live", HOUR));

    // Eight reapers, each with its own connection, taking small slices until none is left.
    const connections = Array.from({ length: 8 }, () => new Redis(redisUrl, { maxRetriesPerRequest: null }));
    try {
      const taken = await Promise.all(
        connections.map(async (connection) => {
          const reaper = new LeaseStore(connection, keys);
          const mine: { id: string; first: boolean }[] = [];
          for (;;) {
            const batch = await reaper.takeDue(Date.now(), 3, HOUR);
            if (batch.length === 0) return mine;
            mine.push(...batch.map((b) => ({ id: b.lease.id, first: b.first })));
          }
        }),
      );
      const ids = taken.flat().map((t) => t.id);
      expect(ids).toHaveLength(due.length);
      expect(new Set(ids)).toEqual(new Set(due.map((l) => l.id)));
      expect(taken.flat().every((t) => t.first)).toBe(true);
      expect(ids).not.toContain(live.id);
    } finally {
      for (const c of connections) c.disconnect();
    }
  });

  test("a lease taken but not finished is handed out again with first=false; end() stops that", async ({
    redis,
    prefix,
  }) => {
    const keys = new LabKeys(prefix);
    const leases = new LeaseStore(redis, keys);
    const now = Date.now();
    const a = await leases.create(claim("ci-eeee", 1000), now - 10_000);
    const b = await leases.create(claim("ci-ffff", 1000), now - 10_000);

    const first = await leases.takeDue(now, 50, 30_000);
    expect(first.map((t) => [t.lease.id, t.first]).sort()).toEqual(
      [
        [a.id, true],
        [b.id, true],
      ].sort(),
    );
    // Within the retry time nobody gets them again.
    expect(await leases.takeDue(now + 10_000, 50, 30_000)).toEqual([]);

    // The reaper that took them died; b was finished (ended), a was not.
    await leases.end(b.id);
    const again = await leases.takeDue(now + 31_000, 50, 30_000);
    expect(again.map((t) => [t.lease.id, t.first])).toEqual([[a.id, false]]);
    expect(again[0]?.lease.target).toBe("ci-eeee");
    // Handed out again just now: not again until another retry time has passed.
    expect(await leases.takeDue(now + 32_000, 50, 30_000)).toEqual([]);

    await leases.end(a.id);
    expect(await leases.takeDue(now + 120_000, 50, 30_000)).toEqual([]);
    expect(await redis.exists(keys.lease(a.id), keys.lease(b.id))).toBe(0);
    expect(await redis.zcard(keys.leasesReaping())).toBe(0);
  });

  test("a lease whose hash is gone is dropped from reaping, not handed out", async ({ redis, prefix }) => {
    const keys = new LabKeys(prefix);
    const leases = new LeaseStore(redis, keys);
    const lease = await leases.create(claim("ci-gggg", 1000), Date.now() - 10_000);
    await redis.del(keys.lease(lease.id));
    expect(await leases.takeDue()).toEqual([]);
    expect(await redis.zcard(keys.leasesReaping())).toBe(0);
    expect(await leases.list()).toEqual([]);
  });
});
