import type { LeaseView } from "@virtfleet/core";
import { FleetClient } from "@virtfleet/fleet";
import { pino } from "pino";
import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { LabKeys } from "../keys.js";
import { Reaper } from "../reaper/reaper.js";
import { LeaseEvents } from "./lease-events.js";
import { LeaseStore } from "./lease-store.js";
import { releaseLease } from "./release-lease.js";

const logger = pino({ level: "silent" });
const MIN = 60_000;

describe("releaseLease against real Redis", () => {
  test("runs the kind's handler with `released`, ends the lease; the reaper never takes it too", async ({
    redis,
    redisUrl,
    prefix,
  }) => {
    const keys = new LabKeys(prefix);
    const leases = new LeaseStore(redis, keys);
    const fleet = new FleetClient({ redisUrl, prefix });
    const deps = { redis, keys, leases, logger, fleet };
    const seen: [string, string][] = [];
    const handlers = {
      claim: {
        async expire(l: LeaseView, reason: "expired" | "released") {
          seen.push([l.id, reason]);
        },
      },
    };
    const lease = await leases.create({ kind: "claim", target: "rp-a", tenant: "t1", ttlMs: MIN, maxLifetimeMs: MIN });
    // Another tenant sees no such lease.
    await expect(releaseLease(deps, handlers, lease.id, { tenant: "t2" })).rejects.toMatchObject({ code: "NOT_FOUND" });
    expect((await releaseLease(deps, handlers, lease.id, { tenant: "t1" })).id).toBe(lease.id);
    expect(seen).toEqual([[lease.id, "released"]]);
    expect(await leases.get(lease.id)).toBeUndefined();
    await new Reaper({ deps, handlers, orphanSweepMs: 0 }).tick();
    expect(seen).toHaveLength(1);
    await expect(releaseLease(deps, handlers, lease.id)).rejects.toMatchObject({ code: "NOT_FOUND" });
    const events = new LeaseEvents(redis, keys, logger);
    expect((await events.list()).map((e) => [e.type, e.leaseId])).toEqual([["lease.released", lease.id]]);
    expect(await events.expiries()).toEqual({});

    // An expired lease (the reaper's) cannot be released.
    const due = await leases.create({ kind: "claim", target: "rp-b", ttlMs: 1, maxLifetimeMs: MIN }, Date.now() - 5000);
    await expect(releaseLease(deps, handlers, due.id)).rejects.toMatchObject({ code: "NOT_FOUND" });
    expect(seen).toHaveLength(1);

    // A handler that fails leaves the lease taken: the reaper finishes it (no expiry recorded).
    const c = await leases.create({ kind: "claim", target: "rp-c", ttlMs: MIN, maxLifetimeMs: MIN });
    const failing = {
      claim: {
        async expire() {
          throw new Error("down");
        },
      },
    };
    await expect(releaseLease(deps, failing, c.id)).rejects.toThrow("down");
    expect(await redis.zscore(keys.leasesReaping(), c.id)).not.toBeNull();
    await new Reaper({ deps, handlers, retryMs: 0, orphanSweepMs: 0 }).tick();
    expect(seen.map(([id]) => id)).toContain(c.id);
    expect(await leases.get(c.id)).toBeUndefined();
    await fleet.close();
  });
});
