import type { LeaseView } from "@virtfleet/core";
import { FleetClient, type VmRecord } from "@virtfleet/fleet";
import { pino } from "pino";
import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import type { LeaseHandler } from "../deps.js";
import { LabKeys } from "../keys.js";
import { LeaseEvents } from "../leases/lease-events.js";
import { LeaseStore } from "../leases/lease-store.js";
import { OrphanSweep } from "./orphan-sweep.js";
import { Reaper } from "./reaper.js";

const logger = pino({ level: "silent" });
const MIN = 60_000;

function setup(redis: import("ioredis").Redis, redisUrl: string, prefix: string) {
  const keys = new LabKeys(prefix);
  const fleet = new FleetClient({ redisUrl, prefix });
  const leases = new LeaseStore(redis, keys);
  return {
    deps: { redis, keys, fleet, leases, logger },
    keys,
    fleet,
    leases,
    events: new LeaseEvents(redis, keys, logger),
  };
}

/** A handler that counts its calls per lease (and can fail the first call of each). */
function countingHandler(failFirst = false) {
  const calls = new Map<string, number>();
  const handler: LeaseHandler = {
    async expire(lease: LeaseView, reason) {
      expect(reason).toBe("expired");
      const n = (calls.get(lease.id) ?? 0) + 1;
      calls.set(lease.id, n);
      await new Promise((r) => setTimeout(r, 5));
      if (failFirst && n === 1) throw new Error("handler crashed");
    },
  };
  return { handler, calls };
}

describe("Reaper against real Redis", () => {
  test("two reapers ticking at once end each of many due leases exactly once", async ({ redis, redisUrl, prefix }) => {
    const { deps, fleet, leases, events, keys } = setup(redis, redisUrl, prefix);
    const past = Date.now() - 10_000;
    const ids: string[] = [];
    for (let i = 0; i < 60; i++)
      ids.push(
        (await leases.create({ kind: "claim", target: `rp-vm-${i}`, pool: "p", ttlMs: 1000, maxLifetimeMs: MIN }, past))
          .id,
      );
    const live = await leases.create({ kind: "claim", target: "rp-live", ttlMs: MIN, maxLifetimeMs: MIN });
    const { handler, calls } = countingHandler();
    // A small batch, so both reapers loop over several takes while the other does too.
    const a = new Reaper({ deps, handlers: { claim: handler }, batch: 7, orphanSweepMs: 0 });
    const b = new Reaper({ deps, handlers: { claim: handler }, batch: 7, orphanSweepMs: 0 });
    await Promise.all([a.tick(), b.tick(), a.tick(), b.tick()]);
    expect([...calls.keys()].sort()).toEqual([...ids].sort());
    expect([...calls.values()].every((n) => n === 1)).toBe(true);
    const expired = (await events.list(1000)).filter((e) => e.type === "lease.expired");
    expect(expired.map((e) => e.leaseId).sort()).toEqual([...ids].sort());
    expect(expired[0]).toMatchObject({ kind: "claim", pool: "p" });
    expect(await events.expiries()).toEqual({ claim: 60 });
    for (const id of ids) expect(await leases.get(id)).toBeUndefined();
    expect(await redis.zcard(keys.leasesReaping())).toBe(0);
    // The live lease is left alone.
    expect((await leases.list()).map((l) => l.id)).toEqual([live.id]);
    await fleet.close();
  });

  test("a handler that crashes the first time: retried, recorded once", async ({ redis, redisUrl, prefix }) => {
    const { deps, fleet, leases, events, keys } = setup(redis, redisUrl, prefix);
    const lease = await leases.create(
      { kind: "claim", target: "rp-x", ttlMs: 1, maxLifetimeMs: MIN },
      Date.now() - 5000,
    );
    const { handler, calls } = countingHandler(true);
    const reaper = new Reaper({ deps, handlers: { claim: handler }, retryMs: 200, orphanSweepMs: 0 });
    await reaper.tick();
    expect(calls.get(lease.id)).toBe(1);
    // Still taken (in reaping), not ended.
    expect(await leases.get(lease.id)).toBeDefined();
    expect(await redis.zscore(keys.leasesReaping(), lease.id)).not.toBeNull();
    // Before retryMs: nobody takes it again.
    await reaper.tick();
    expect(calls.get(lease.id)).toBe(1);
    await new Promise((r) => setTimeout(r, 250));
    await reaper.tick();
    expect(calls.get(lease.id)).toBe(2);
    expect(await leases.get(lease.id)).toBeUndefined();
    expect((await events.list()).filter((e) => e.leaseId === lease.id)).toHaveLength(1);
    expect(await events.expiries()).toEqual({ claim: 1 });
    await fleet.close();
  });

  test("a lease of a kind with no handler stays taken (not lost, not ended)", async ({ redis, redisUrl, prefix }) => {
    const { deps, fleet, leases, keys } = setup(redis, redisUrl, prefix);
    const lease = await leases.create(
      { kind: "lab", target: "rp-lab", ttlMs: 1, maxLifetimeMs: MIN },
      Date.now() - 5000,
    );
    await new Reaper({ deps, handlers: {}, orphanSweepMs: 0 }).tick();
    expect(await leases.get(lease.id)).toBeDefined();
    expect(await redis.zscore(keys.leasesReaping(), lease.id)).not.toBeNull();
    await fleet.close();
  });
});

describe("OrphanSweep against real Redis", () => {
  test("destroys pool and lab VMs whose pool or lab is gone, once, and skips young ones", async ({
    redis,
    redisUrl,
    prefix,
  }) => {
    const { deps, fleet, keys } = setup(redis, redisUrl, prefix);
    const old = new Date(Date.now() - 5 * MIN).toISOString();
    const vm = (name: string, labels: Record<string, string>, updatedAt = old): VmRecord => ({
      name,
      hostId: "rp-h1",
      state: "running",
      fingerprint: "f",
      jobId: `job-${name}`,
      memoryMiB: 128,
      vcpus: 1,
      labels,
      updatedAt,
    });
    await redis.sadd(keys.pools(), "alive");
    await redis.sadd(keys.labs(), "lab1");
    await fleet.vms.put(vm("rp-alive-1", { "virtfleet.pool": "alive" }));
    await fleet.vms.put(vm("rp-gone-1", { "virtfleet.pool": "gone" }));
    await fleet.vms.put(vm("rp-gone-young", { "virtfleet.pool": "gone" }, new Date().toISOString()));
    await fleet.vms.put(vm("rp-lab1-a-1", { "virtfleet.lab": "lab1" }));
    await fleet.vms.put(vm("rp-labx-a-1", { "virtfleet.lab": "labx" }));
    await fleet.vms.put(vm("rp-plain", {}));
    const sweep = new OrphanSweep({ deps });
    const swept = await sweep.run();
    expect(swept.map((s) => s.vm).sort()).toEqual(["rp-gone-1", "rp-labx-a-1"]);
    expect((await fleet.vms.get("rp-gone-1"))?.state).toBe("destroying");
    expect((await fleet.vms.get("rp-labx-a-1"))?.state).toBe("destroying");
    for (const n of ["rp-alive-1", "rp-gone-young", "rp-lab1-a-1", "rp-plain"])
      expect((await fleet.vms.get(n))?.state).toBe("running");
    // A second sweep does not destroy them again (they are being destroyed).
    expect(await sweep.run()).toEqual([]);
    // The reaper runs the sweep from its tick.
    await fleet.vms.put(vm("rp-gone-2", { "virtfleet.pool": "gone" }));
    await new Reaper({ deps, handlers: {} }).tick();
    expect((await fleet.vms.get("rp-gone-2"))?.state).toBe("destroying");
    await fleet.close();
  });
});
