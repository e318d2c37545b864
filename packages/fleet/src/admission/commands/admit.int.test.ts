import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostStatus } from "../../../../../test/fixtures/host-status.js";
import { LocalRedis } from "../../../../../test/fixtures/redis-server.js";
import { HostRegistry } from "../../hosts/host-registry.js";
import { CapacityLedger } from "../../placement/capacity-ledger.js";
import { hostClass } from "../../placement/host-class.js";
import { FleetClient } from "../../producer/fleet-client.js";
import type { VmRecord } from "../../records/records.js";
import { Keys } from "../../redis/keys.js";
import { Admission, type AdmitRequest } from "../admission.js";
import type { QuotaLimits } from "../quota.js";

// admit.lua at fleet scale: a create reads a handful of hosts, not all of them. A Redis of its own,
// so its command counts are this test's alone.
let local: LocalRedis;
beforeAll(async () => {
  local = await LocalRedis.start({ appendonly: false });
});
afterAll(async () => {
  await local.stop();
});

/** Calls of each command since the last CONFIG RESETSTAT. */
async function calls(redis: Redis): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of (await redis.info("commandstats")).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    out[m[1] as string] = Number(m[2]);
  }
  return out;
}

describe("admit", () => {
  it("a create at 1,000 hosts reads a handful of them, and lands on the one of its zone with most free memory", async () => {
    const prefix = "pl-scale";
    const keys = new Keys(prefix);
    const redis = new Redis(local.url, { maxRetriesPerRequest: null });
    const client = new FleetClient({ redisUrl: local.url, prefix });
    try {
      const hosts = new HostRegistry(redis, keys);
      const ledger = new CapacityLedger(redis, keys);
      // 1,000 hosts in 4 zones (4 classes), all up; the busier the greater the id.
      await Promise.all(
        Array.from({ length: 1000 }, async (_, i) => {
          const id = `pl-h${String(i).padStart(4, "0")}`;
          await ledger.setCapacity(id, 65536, 64);
          await hosts.heartbeat(hostStatus(id, { labels: { zone: `z${i % 4}` } }), 60_000);
          if (i > 0) await ledger.claim([id], `busy-${i}`, 16 + i, 1);
        }),
      );
      const spec = (name: string) => ({ name, memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: 1 }] });
      await client.createVm(spec("pl-warm")); // the scripts loaded, the hosts list read and cached
      await redis.config("RESETSTAT");
      const job = await client.createVm(spec("pl-vm"), { labels: { zone: "z0" } });
      const stats = await calls(redis);
      // The old admission read 4 keys of every candidate host (1,000 HMGETs and more).
      expect(stats.hmget ?? 0).toBeGreaterThan(0);
      expect(stats.hmget ?? 0).toBeLessThan(50);
      expect((stats.zscore ?? 0) + (stats.exists ?? 0) + (stats.hexists ?? 0)).toBeLessThan(50);
      // The first create took 256 MiB of pl-h0000; of zone z0, pl-h0004 (20 MiB taken) has the most free now.
      expect((await client.vms.get("pl-warm"))?.hostId).toBe("pl-h0000");
      expect((await client.log.getJob(job.id))?.hostId).toBe("pl-h0004");
    } finally {
      await client.close();
      redis.disconnect();
    }
  });

  it("an admission reads its host's state, its host's class and its VM's claim once each", async () => {
    const prefix = "pl-once";
    const keys = new Keys(prefix);
    const redis = new Redis(local.url, { maxRetriesPerRequest: null });
    const client = new FleetClient({ redisUrl: local.url, prefix });
    try {
      const ledger = new CapacityLedger(redis, keys);
      await ledger.setCapacity("pl-once-h", 65536, 64);
      await new HostRegistry(redis, keys).heartbeat(hostStatus("pl-once-h"), 60_000);
      const spec = (name: string) => ({ name, memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: 1 }] });
      await client.createVm(spec("pl-once-warm")); // the scripts loaded, the hosts list read and cached
      await redis.config("RESETSTAT");
      const job = await client.createVm(spec("pl-once-vm"));
      const stats = await calls(redis);
      // HGETs: the VM's state, its claim, and one outside the script; HMGETs: the host's state
      // (spread's walk of the ties meets it again: not read again), and one outside the script.
      // Before: the claim and the class were read twice, the state too, and the capMem once more.
      expect({ hget: stats.hget, hmget: stats.hmget }).toEqual({ hget: 3, hmget: 2 });
      expect((await client.log.getJob(job.id))?.hostId).toBe("pl-once-h");
      expect(await redis.hget(keys.placementClaims(), "pl-once-vm")).toBe("pl-once-h:256:1:1");
    } finally {
      await client.close();
      redis.disconnect();
    }
  });

  it("a pinned create whose VM holds a stale claim on a host of another class moves the claim there (the script asks for each class it needs)", async () => {
    const prefix = "pl-stale";
    const keys = new Keys(prefix);
    const redis = new Redis(local.url, { maxRetriesPerRequest: null });
    const client = new FleetClient({ redisUrl: local.url, prefix });
    try {
      const hosts = new HostRegistry(redis, keys);
      const ledger = new CapacityLedger(redis, keys);
      const x = hostStatus("pl-x", { labels: { zone: "x" } });
      for (const s of [x, hostStatus("pl-y", { labels: { zone: "y" } })]) {
        await ledger.setCapacity(s.hostId, 4096, 4);
        await hosts.heartbeat(s, 60_000);
      }
      // Room held by a name no VM record has (a create that died half-way, say).
      expect(await ledger.claim(["pl-x"], "pl-vm", 1024, 1)).toBe("pl-x");
      const job = await client.createVm(
        { name: "pl-vm", memoryMiB: 512, vcpus: 1, disks: [{ sizeGiB: 1 }] },
        { host: "pl-y" },
      );
      expect((await client.log.getJob(job.id))?.hostId).toBe("pl-y");
      expect(await ledger.claimants("pl-x")).toEqual([]);
      expect(await ledger.claimants("pl-y")).toEqual(["pl-vm"]);
      expect((await ledger.get("pl-x")).allocated).toEqual({ memoryMiB: 0, vcpus: 0 });
      expect((await ledger.get("pl-y")).allocated).toEqual({ memoryMiB: 512, vcpus: 1 });
      expect(await redis.zscore(keys.placementFree(hostClass(x)), "pl-x")).toBe("4096");
    } finally {
      await client.close();
      redis.disconnect();
    }
  });
  it("every value of the request reaches the script: each quota limit, exclude, a host list in order, group, batch, job fields", async () => {
    const prefix = "pl-args";
    const keys = new Keys(prefix);
    const redis = new Redis(local.url, { maxRetriesPerRequest: null });
    const client = new FleetClient({ redisUrl: local.url, prefix });
    try {
      const ledger = new CapacityLedger(redis, keys);
      const hosts = new HostRegistry(redis, keys);
      const statuses = ["pa-h1", "pa-h2", "pa-h3"].map((id) => hostStatus(id));
      for (const s of statuses) {
        await ledger.setCapacity(s.hostId, 8192, 8, 100);
        await hosts.heartbeat(s, 60_000);
      }
      const cls = hostClass(statuses[0] as (typeof statuses)[number]);
      const admission = new Admission(redis, keys);
      const at = new Date().toISOString();
      const request = (vm: string, extra: Partial<AdmitRequest> = {}, job: Partial<AdmitRequest["job"]> = {}) => {
        const record: VmRecord = {
          name: vm,
          hostId: "",
          state: "creating",
          fingerprint: `fp-${vm}`,
          jobId: `create-${vm}`,
          memoryMiB: 1024,
          vcpus: 2,
          labels: { role: "web" },
          createdAt: at,
          updatedAt: at,
        };
        const r: AdmitRequest = {
          record,
          classes: [cls],
          policy: "spread",
          diskGiB: 10,
          job: { jobId: `create-${vm}`, kind: "create", vm, ...job },
          ...extra,
        };
        return r;
      };
      // Each limit is its own: over memory (2 × 1024 > 1500), over vCPUs (2 × 2 > 3), over disk, over VMs.
      await redis.hset(keys.usage("acme"), { vms: 1, mem: 1024, vcpus: 2, disk: 10 });
      const over = async (limits: QuotaLimits) =>
        admission.admit(request("pa-q", { tenant: { name: "acme", limits } }));
      expect(await over({ memoryMiB: 1500 })).toEqual({ outcome: "quota", which: "memoryMiB" });
      expect(await over({ vcpus: 3 })).toEqual({ outcome: "quota", which: "vcpus" });
      expect(await over({ diskGiB: 15 })).toEqual({ outcome: "quota", which: "diskGiB" });
      expect(await over({ vms: 1 })).toEqual({ outcome: "quota", which: "vms" });
      expect(await over({ vms: 2, memoryMiB: 2048, vcpus: 4, diskGiB: 20 })).toEqual({
        outcome: "claimed",
        hostId: "pa-h1",
      });
      expect(await redis.hgetall(keys.usage("acme"))).toMatchObject({ vms: "2", mem: "2048", vcpus: "4", disk: "20" });
      // Spread among equal hosts takes the smallest id: pa-h1 (taken above) and pa-h2 excluded leave pa-h3.
      expect(await admission.admit(request("pa-x", { exclude: ["pa-h2"] }))).toEqual({
        outcome: "claimed",
        hostId: "pa-h3",
      });
      // A host list in order: the first that fits.
      expect(
        await admission.admit(request("pa-l", { hosts: ["pa-h2", "pa-h1"], classes: [], policy: "order" })),
      ).toEqual({ outcome: "claimed", hostId: "pa-h2" });
      // A group: its host is recorded; the batch's and the job's own fields are in the job's record.
      await redis.hset(keys.batch("b1"), { total: 1, ended: 0 });
      expect(
        await admission.admit(
          request("pa-g", { group: "g1" }, { tenant: "acme", batchId: "b1", callbackUrl: "http://127.0.0.1:1/cb" }),
        ),
      ).toMatchObject({ outcome: "claimed" });
      const placed = await redis.hget(keys.group("g1"), "pa-g");
      expect(placed).toMatch(/^pa-h[123]$/);
      expect(await redis.hgetall(keys.job("create-pa-g"))).toMatchObject({
        jobId: "create-pa-g",
        kind: "create",
        vm: "pa-g",
        tenant: "acme",
        batch: "b1",
        callbackUrl: "http://127.0.0.1:1/cb",
        hostId: placed,
        phase: "placed",
        percent: "5",
        message: `placed on host ${placed}`,
        createdAt: expect.any(String),
      });
      expect(await redis.xlen(keys.batchEvents("b1"))).toBe(2);
      expect(await redis.hgetall(keys.vm("pa-g"))).toMatchObject({
        name: "pa-g",
        hostId: placed,
        state: "creating",
        fingerprint: "fp-pa-g",
        memoryMiB: "1024",
        vcpus: "2",
        labels: JSON.stringify({ role: "web" }),
      });
      expect(await redis.hget(keys.placementClaims(), "pa-g")).toBe(`${placed}:1024:2:10`);
      const events = (await redis.xrange(keys.jobEvents("create-pa-g"), "-", "+")).map(
        ([, f]) => JSON.parse(f[1] as string) as { phase: string; host?: string; message: string },
      );
      expect(events.map((e) => [e.phase, e.host, e.message])).toEqual([
        ["queued", undefined, "accepted"],
        ["placed", placed, `placed on host ${placed}`],
      ]);
    } finally {
      await client.close();
      redis.disconnect();
    }
  });
});
