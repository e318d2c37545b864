import type { StreamedLabEvent } from "@virtfleet/core";
import { CapacityLedger, FleetClient } from "@virtfleet/fleet";
import type { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { hostStatus } from "../../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { LabKeys } from "../keys.js";
import { LeaseStore } from "../leases/lease-store.js";
import { TemplateStore } from "../templates/template-store.js";
import { LabService, type LabServiceOptions } from "./lab-service.js";
import { LabWatcher } from "./lab-watcher.js";

// LabService against real Redis with a fake up host and no worker: the VMs' create jobs wait in the
// host's queue, so a lab stays `creating` until it is taken down (its waiting creates are cancelled).

const spec = { memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: 1 }] };

async function setup(redisUrl: string, prefix: string, redis: Redis, options: LabServiceOptions = {}) {
  const fleet = new FleetClient({ redisUrl, prefix });
  await new CapacityLedger(redis, fleet.keys).setCapacity("lb-int-host", 65536, 64, 1000);
  await fleet.hosts.heartbeat(hostStatus("lb-int-host"), 60_000);
  const keys = new LabKeys(prefix);
  const templates = new TemplateStore(redis, keys);
  await templates.put("lbt", spec);
  const leases = new LeaseStore(redis, keys);
  const labs = new LabService({ redis, keys, fleet, templates, leases }, options);
  return { fleet, keys, leases, labs };
}

const lab = { vms: [{ name: "web", template: "lbt", count: 2 }] };

describe("LabService", () => {
  test("a lab's lease expiring takes it down: expiring → gone, the creates cancelled, the events say why", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const { fleet, labs, leases } = await setup(redisUrl, prefix, redis);
    try {
      const up = await labs.up({ name: "lbexp", lab, ttl: "1h" });
      const lease = await leases.get(up.leaseId);
      expect(lease).toMatchObject({ kind: "lab", target: "lbexp" });
      await labs.leaseHandler.expire(lease as NonNullable<typeof lease>, "expired");
      const view = await labs.require("lbexp");
      expect(view.state).toBe("gone");
      expect(view.reason).toBe("the lab's lease expired");
      for (const vm of view.vms) {
        expect((await fleet.log.getJob(vm.jobId))?.phase).toBe("cancelled");
        expect(await fleet.vms.get(vm.name)).toBeUndefined();
      }
      expect(await leases.get(up.leaseId)).toBeUndefined();
      // Called again after a crash: nothing more happens.
      await labs.leaseHandler.expire(lease as NonNullable<typeof lease>, "expired");
      // A lab that is no longer there: nothing to do either.
      await labs.leaseHandler.expire({ ...(lease as NonNullable<typeof lease>), target: "lbnosuch" }, "expired");

      const events: StreamedLabEvent[] = [];
      for await (const e of labs.events("lbexp", { blockMs: 200 })) events.push(e);
      expect(
        events.filter((e) => e.type === "state").map((e) => [e.state, e.type === "state" ? e.reason : ""]),
      ).toEqual([
        ["creating", undefined],
        ["expiring", "the lab's lease expired"],
        ["gone", "the lab's lease expired"],
      ]);
      // Resumed past its last event: ends at once, with nothing more.
      const after: StreamedLabEvent[] = [];
      for await (const e of labs.events("lbexp", { after: events.at(-1)?.id ?? "0", blockMs: 200 })) after.push(e);
      expect(after).toEqual([]);
      expect(events.filter((e) => e.type === "vm").map((e) => (e.type === "vm" ? [e.vm, e.phase] : []))).toEqual([
        ["lbexp-web-1", "cancelled"],
        ["lbexp-web-2", "cancelled"],
      ]);
    } finally {
      await fleet.close();
    }
  });

  test("names: NAME_CLASH while a lab lives, free once it is gone; the record is removed after retention", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const { fleet, labs, keys } = await setup(redisUrl, prefix, redis, { retentionMs: 0 });
    try {
      await labs.up({ name: "lbname", lab });
      await expect(labs.up({ name: "lbname", lab })).rejects.toMatchObject({ code: "NAME_CLASH", field: "name" });
      expect((await labs.down("lbname")).state).toBe("gone");
      // Free again at once (the old record is replaced).
      const again = await labs.up({ name: "lbname", lab: { vms: [{ name: "db", template: "lbt" }] } });
      expect(again.vms.map((v) => v.name)).toEqual(["lbname-db-1"]);
      await labs.down("lbname");
      // The watcher removes what ended `retentionMs` ago.
      await new LabWatcher(labs).tick();
      expect(await labs.get("lbname")).toBeUndefined();
      expect(await redis.exists(keys.lab("lbname"), keys.labVms("lbname"), keys.labEvents("lbname"))).toBe(0);
      expect(await redis.sismember(keys.labs(), "lbname")).toBe(0);
      await expect(labs.down("lbname")).rejects.toMatchObject({ code: "NOT_FOUND", field: "name" });
    } finally {
      await fleet.close();
    }
  });

  test("extend: from now, never past the maximum lifetime; not once the lab is going", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const { fleet, labs } = await setup(redisUrl, prefix, redis);
    try {
      const up = await labs.up({ name: "lbext", lab, ttl: "10m", maxLifetime: "1h" });
      const ttl = Date.parse(up.expiresAt) - Date.now();
      expect(ttl).toBeGreaterThan(9 * 60_000);
      expect(ttl).toBeLessThanOrEqual(10 * 60_000);
      const longer = await labs.extend("lbext", 30 * 60_000);
      expect(Date.parse(longer.expiresAt) - Date.now()).toBeGreaterThan(29 * 60_000);
      const capped = await labs.extend("lbext", 5 * 3_600_000);
      expect(Date.parse(capped.expiresAt) - Date.parse(up.createdAt)).toBe(3_600_000);
      await labs.down("lbext");
      await expect(labs.extend("lbext", 60_000)).rejects.toMatchObject({ code: "NOT_FOUND" });
      // Another tenant sees nothing of it.
      expect(await labs.get("lbext", { tenant: "other" })).toBeUndefined();
    } finally {
      await fleet.close();
    }
  });

  test("a failed lab rolls back by default; with rollbackOnFailure false it keeps what came up", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const { fleet, labs } = await setup(redisUrl, prefix, redis);
    try {
      // One VM refused at admission (its name is another VM's, with another spec): the lab fails.
      await fleet.createVm({ ...spec, memoryMiB: 512, name: "lbkeep-web-2" });
      await fleet.createVm({ ...spec, memoryMiB: 512, name: "lbroll-web-2" });
      const keep = await labs.up({ name: "lbkeep", lab: { ...lab, rollbackOnFailure: false } });
      const roll = await labs.up({ name: "lbroll", lab });
      for (const v of [keep, roll]) {
        expect(v.state).toBe("failed");
        expect(v.reason).toMatch(new RegExp(`^${v.name}-web-2: NAME_CLASH: `));
      }
      const watcher = new LabWatcher(labs);
      await watcher.tick();
      await watcher.tick();
      const kept = await labs.require("lbkeep");
      expect(kept).toMatchObject({ state: "failed", rolledBack: false });
      expect(kept.vms.find((v) => v.name === "lbkeep-web-1")?.phase).toBe("placed");
      const rolled = await labs.require("lbroll");
      expect(rolled).toMatchObject({ state: "failed", rolledBack: true });
      expect(rolled.vms.find((v) => v.name === "lbroll-web-1")?.phase).toBe("cancelled");
      expect(await fleet.vms.get("lbroll-web-1")).toBeUndefined();
      // The VM it clashed with is not the lab's: left alone.
      expect(await fleet.vms.get("lbroll-web-2")).toBeDefined();
      // A kept lab still goes down as a whole.
      expect((await labs.down("lbkeep")).state).toBe("gone");
      expect(await fleet.vms.get("lbkeep-web-1")).toBeUndefined();
    } finally {
      await fleet.close();
    }
  });
});
