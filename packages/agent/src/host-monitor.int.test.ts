import { specFingerprint, VmSpec } from "@virtfleet/core";
import { Admission, FleetClient, Keys } from "@virtfleet/fleet";
import type { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { waitingIds } from "../../../test/fixtures/host-queue.js";
import { hostUp } from "../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../test/fixtures/redis-test.js";
import { HostMonitor } from "./host-monitor.js";

const spec = (name: string, diskGiB = 1) => ({ name, memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: diskGiB }] });

/** Creates `names` on `hostId` (brought up) in one call: their job ids, and the one bundle carrying them in its queue. */
async function createBundle(
  client: FleetClient,
  redisUrl: string,
  prefix: string,
  hostId: string,
  names: string[],
): Promise<{ ids: string[]; bundle: string }> {
  await hostUp(client, hostId, {}, { diskGiB: 100 });
  const ids = (await client.createVms(names.map((n) => spec(n)))).map((h) => {
    if (h instanceof Error) throw h;
    return h.id;
  });
  const waiting = await waitingIds(redisUrl, prefix, hostId);
  expect(waiting).toHaveLength(1);
  expect(waiting[0]).toMatch(new RegExp(`^bundle-${names.length}-`));
  return { ids, bundle: waiting[0] as string };
}

/** Admits a create (tenant acme, 2 GiB of disk) on `hostId` as a producer would, then "dies" before it enqueues the job. */
async function admitOnly(redis: Redis, keys: Keys, name: string, jobId: string, hostId: string): Promise<void> {
  const s = VmSpec.parse(spec(name, 2));
  const outcome = await new Admission(redis, keys).admit({
    record: {
      name,
      hostId: "",
      state: "creating",
      fingerprint: specFingerprint(s),
      jobId,
      memoryMiB: s.memoryMiB,
      vcpus: s.vcpus,
      labels: {},
      tenant: "acme",
      updatedAt: new Date().toISOString(),
    },
    hosts: [hostId],
    policy: "order",
    diskGiB: 2,
    tenant: { name: "acme", limits: {} },
    job: { jobId, kind: "create", vm: name, tenant: "acme" },
  });
  expect(outcome).toEqual({ outcome: "claimed", hostId });
}

describe("host monitor: pending admissions", () => {
  test("a producer that died between admission and enqueue: a retry enqueues the job; else the sweep ends it and gives everything back", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    const monitor = new HostMonitor({ fleet: client, redis });
    const keys = new Keys(prefix);
    const ghost = (name: string, jobId: string) => admitOnly(redis, keys, name, jobId, "ad-h1");
    try {
      await hostUp(client, "ad-h1", {}, { diskGiB: 100 });

      // A retry before the sweep: the same job, now in its queue (not a job that will never run).
      await ghost("ad-retried", "create-11111111-1111-4111-8111-111111111111");
      const retried = await client.createVm(spec("ad-retried", 2), { tenant: "acme" });
      expect(retried.id).toBe("create-11111111-1111-4111-8111-111111111111");
      expect(await waitingIds(redisUrl, prefix, "ad-h1")).toEqual([retried.id]);
      expect(await monitor.sweepPending(0)).toEqual([]);
      expect((await client.vms.get("ad-retried"))?.state).toBe("creating");

      // No retry: the monitor's sweep fails it and gives room, quota and name back.
      const lost = "create-22222222-2222-4222-8222-222222222222";
      await ghost("ad-lost", lost);
      expect((await client.vms.quotas.usage("acme")).vms).toBe(2);
      expect(await monitor.sweepPending()).toEqual([]); // not old enough yet
      expect(await monitor.sweepPending(0)).toEqual([lost]);
      expect((await client.log.getJob(lost))?.phase).toBe("failed");
      expect((await client.log.getJob(lost))?.error?.code).toBe("INTERNAL");
      expect(await client.vms.get("ad-lost")).toBeUndefined();
      expect(await client.vms.quotas.usage("acme")).toEqual({ vms: 1, memoryMiB: 256, vcpus: 1, diskGiB: 2 });
      const alloc = await client.vms.ledger.get("ad-h1");
      expect(alloc.allocated).toEqual({ memoryMiB: 256, vcpus: 1 });
      expect(alloc.disk.allocatedGiB).toBe(2);
      const again = await client.createVm(spec("ad-lost", 2), { tenant: "acme" });
      expect(again.id).not.toBe(lost);
      expect((await waitingIds(redisUrl, prefix, "ad-h1")).sort()).toEqual([retried.id, again.id].sort());
      expect(await redis.zcard(client.keys.pendingJobs())).toBe(0);
    } finally {
      await client.close();
    }
  });

  test("a producer that died after enqueueing a bundle, before its jobs left the pending set: the sweep finds them in the bundle and leaves them to run", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    const monitor = new HostMonitor({ fleet: client, redis });
    try {
      // One BullMQ job (a bundle) carries the three: none of them is a BullMQ job of its own id.
      const { ids, bundle } = await createBundle(client, redisUrl, prefix, "bd-h1", ["bd-a", "bd-b", "bd-c"]);
      // The producer "died" before it took them out of the pending set (admitted long ago).
      await redis.zadd(client.keys.pendingJobs(), 0, ids[0] as string, 0, ids[1] as string, 0, ids[2] as string);
      // And one admitted on the same host that never reached the queue: that one the sweep ends.
      const lost = "create-33333333-3333-4333-8333-333333333333";
      await admitOnly(redis, new Keys(prefix), "bd-lost", lost, "bd-h1");
      // Admitted long ago too (else, swept in the same millisecond, it is not yet older than "now").
      await redis.zadd(client.keys.pendingJobs(), 0, lost);

      expect(await monitor.sweepPending(0)).toEqual([lost]);
      expect((await client.log.getJob(lost))?.phase).toBe("failed");
      for (const id of ids) expect((await client.log.getJob(id))?.phase).toBe("placed");
      for (const name of ["bd-a", "bd-b", "bd-c"]) expect((await client.vms.get(name))?.state).toBe("creating");
      expect((await client.vms.ledger.get("bd-h1")).allocated).toEqual({ memoryMiB: 3 * 256, vcpus: 3 });
      expect(await redis.zcard(client.keys.pendingJobs())).toBe(0);
      expect(await waitingIds(redisUrl, prefix, "bd-h1")).toEqual([bundle]);
    } finally {
      await client.close();
    }
  });
});

describe("host monitor: lost hosts", () => {
  test("a lost host's waiting create is re-placed on another host, a pinned one fails HOST_LOST; once per outage", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const client = new FleetClient({ redisUrl, prefix, placementCacheMs: 0 });
    const monitor = new HostMonitor({ fleet: client, redis });
    try {
      await hostUp(client, "hm-h1", {}, { diskGiB: 100 });
      const free = await client.createVm(spec("hm-free"));
      const pinned = await client.createVm(spec("hm-pinned"), { host: "hm-h1" });
      expect((await waitingIds(redisUrl, prefix, "hm-h1")).sort()).toEqual([free.id, pinned.id].sort());
      expect(await monitor.checkHosts()).toEqual([]); // every host is up

      await hostUp(client, "hm-h2", {}, { diskGiB: 100 });
      await client.hosts.markDown("hm-h1");
      expect(await monitor.checkHosts()).toEqual(["hm-h1"]);
      expect(await monitor.checkHosts()).toEqual([]); // dealt with once per outage

      expect(await waitingIds(redisUrl, prefix, "hm-h1")).toEqual([]);
      expect(await waitingIds(redisUrl, prefix, "hm-h2")).toEqual([free.id]);
      expect(await client.log.getJob(free.id)).toMatchObject({ phase: "placed" });
      expect((await client.vms.get("hm-free"))?.hostId).toBe("hm-h2");
      expect((await client.vms.ledger.get("hm-h2")).allocated).toEqual({ memoryMiB: 256, vcpus: 1 });

      const lost = await client.log.getJob(pinned.id);
      expect(lost?.phase).toBe("failed");
      expect(lost?.error?.code).toBe("HOST_LOST");
      expect(await client.vms.get("hm-pinned")).toBeUndefined();
      expect((await client.vms.ledger.get("hm-h1")).allocated).toEqual({ memoryMiB: 0, vcpus: 0 });
    } finally {
      await client.close();
    }
  });

  test("a lost host's waiting bundle leaves its queue, and each of its creates is re-placed on another host", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const client = new FleetClient({ redisUrl, prefix, placementCacheMs: 0 });
    const monitor = new HostMonitor({ fleet: client, redis });
    try {
      const { ids } = await createBundle(client, redisUrl, prefix, "hb-h1", ["hb-a", "hb-b", "hb-c"]);

      await hostUp(client, "hb-h2", {}, { diskGiB: 100 });
      await client.hosts.markDown("hb-h1");
      expect(await monitor.checkHosts()).toEqual(["hb-h1"]);
      expect(await waitingIds(redisUrl, prefix, "hb-h1")).toEqual([]);
      expect((await waitingIds(redisUrl, prefix, "hb-h2")).sort()).toEqual([...ids].sort());
      for (const [i, id] of ids.entries()) {
        expect(await client.log.getJob(id)).toMatchObject({ phase: "placed", hostId: "hb-h2" });
        expect((await client.vms.get(`hb-${"abc"[i]}`))?.hostId).toBe("hb-h2");
      }
      expect((await client.vms.ledger.get("hb-h1")).allocated).toEqual({ memoryMiB: 0, vcpus: 0 });
      expect((await client.vms.ledger.get("hb-h2")).allocated).toEqual({ memoryMiB: 768, vcpus: 3 });
    } finally {
      await client.close();
    }
  });
});
