import { VirtfleetError } from "@virtfleet/core";
import { Queue } from "bullmq";
import { describe, expect } from "vitest";
import { waitingJobs } from "../../../../test/fixtures/host-queue.js";
import { hostUp } from "../../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { EventLog } from "../records/event-log.js";
import { Keys } from "../redis/keys.js";
import { FleetClient } from "./fleet-client.js";

const spec = (name: string, vcpus = 1) => ({ name, memoryMiB: 256, vcpus, disks: [{ sizeGiB: 1 }] });

describe("FleetClient against real Redis", () => {
  test("a create is validated, placed on an up host, enqueued on that host's queue, and reports queued then placed", async ({
    redisUrl,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      await hostUp(client, "h1");
      const job = await client.createVm(spec("vm1"));
      const queue = new Queue(new Keys(prefix).hostQueue("h1"), { connection: { url: redisUrl }, prefix });
      const waiting = await queue.getJobs(["waiting"]);
      await queue.close();
      expect(waiting.map((j) => j.id)).toEqual([job.id]);
      expect(waiting[0]?.data).toMatchObject({
        kind: "create",
        hostId: "h1",
        spec: { name: "vm1", disks: [{ sizeGiB: 1, format: "qcow2" }] },
      });
      const events = await client.log.read(job.id);
      expect(events.map((e) => e.phase)).toEqual(["queued", "placed"]);
      expect(events[1]?.host).toBe("h1");
      expect((await client.vms.get("vm1"))?.state).toBe("creating");
    } finally {
      await client.close();
    }
  });

  test("a bad spec throws a ValidationError naming the field, and nothing is written", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      await hostUp(client, "h1");
      const before = (await redis.keys(`${prefix}:*`)).sort();
      await expect(client.createVm({ ...spec("vm1"), memoryMiB: 1 })).rejects.toMatchObject({
        code: "INVALID_SPEC",
        field: "spec.memoryMiB",
      });
      await expect(
        client.createVm({ ...spec("vm1"), install: { method: "cdrom", image: "../x.iso" } }),
      ).rejects.toMatchObject({
        field: "spec.install.image",
      });
      expect((await redis.keys(`${prefix}:*`)).sort()).toEqual(before);
    } finally {
      await client.close();
    }
  });

  test("the same VM asked twice (even concurrently) gives one job; another spec under the name is NAME_CLASH", async ({
    redisUrl,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      await hostUp(client, "h1");
      const jobs = await Promise.all(Array.from({ length: 10 }, () => client.createVm(spec("twin"))));
      expect(new Set(jobs.map((j) => j.id)).size).toBe(1);
      const error = await client.createVm(spec("twin", 2)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(VirtfleetError);
      expect((error as VirtfleetError).code).toBe("NAME_CLASH");
    } finally {
      await client.close();
    }
  });

  test("with no host up the request is refused with NO_CAPACITY; a pinned unknown host is HOST_NOT_FOUND", async ({
    redisUrl,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      await expect(client.createVm(spec("a"))).rejects.toMatchObject({ code: "NO_CAPACITY" });
      await hostUp(client, "h1");
      await expect(client.createVm(spec("a"), { host: "nope" })).rejects.toMatchObject({
        code: "HOST_NOT_FOUND",
        field: "host",
      });
      await hostUp(client, "h2", { draining: true });
      // h1 has 4 vCPUs: four 1-vCPU VMs fit, the fifth is refused; h2 drains and takes none.
      for (let i = 0; i < 4; i++) {
        const job = await client.createVm(spec(`spread-${i}`));
        expect((await job.status())?.hostId).toBe("h1");
      }
      await expect(client.createVm(spec("spread-4"))).rejects.toMatchObject({ code: "NO_CAPACITY" });
      expect(await client.vms.get("spread-4")).toBeUndefined();
    } finally {
      await client.close();
    }
  });

  test("wait() follows events to the terminal one and ignores anything after it; events() resumes after an id", async ({
    redisUrl,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    const log = new EventLog(client.connect(), new Keys(prefix));
    try {
      await hostUp(client, "h1");
      const job = await client.createVm(spec("w1"));
      const seen: string[] = [];
      const waiting = job.wait({ onEvent: (e) => seen.push(e.phase), timeoutMs: 10_000 });
      for (const phase of ["disk.creating", "disk.ready", "domain.defining", "domain.running", "done"] as const) {
        await log.append({ jobId: job.id, kind: "create", vm: "w1", phase, message: phase, host: "h1" });
      }
      expect(
        await log.append({ jobId: job.id, kind: "create", vm: "w1", phase: "failed", message: "late" }),
      ).toBeUndefined();
      const end = await waiting;
      expect(end.phase).toBe("done");
      expect(seen).toEqual([
        "queued",
        "placed",
        "disk.creating",
        "disk.ready",
        "domain.defining",
        "domain.running",
        "done",
      ]);
      const all = await client.log.read(job.id);
      const resumed: string[] = [];
      for await (const e of job.events(all[3]?.id)) resumed.push(e.phase);
      expect(resumed).toEqual(["domain.defining", "domain.running", "done"]);
      expect((await job.status())?.phase).toBe("done");
    } finally {
      await client.close();
    }
  });

  test("a destroy of a VM the fleet does not know needs a host when there are several", async ({
    redisUrl,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      await hostUp(client, "h1");
      await hostUp(client, "h2");
      await expect(client.destroyVm("ghost")).rejects.toMatchObject({ code: "VM_NOT_FOUND" });
      const job = await client.destroyVm("ghost", { host: "h2" });
      expect((await job.status())?.hostId).toBe("h2");
      await expect(client.destroyVm("Not A Name")).rejects.toMatchObject({ code: "INVALID_SPEC", field: "name" });
    } finally {
      await client.close();
    }
  });
});

describe("FleetClient.createVms against real Redis", () => {
  test("admits many at once: one bulk add per host, each job with queued and placed events; refusals write nothing", async ({
    redisUrl,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      await hostUp(client, "h1");
      await hostUp(client, "h2");
      await client.createVm(spec("taken"));
      const before = await client.vms.get("taken");
      // 8 vCPUs in all: the first 7 fit beside "taken", the 8th and 9th do not.
      const specs = [
        ...Array.from({ length: 9 }, (_, i) => spec(`many-${i}`)),
        spec("taken", 2), // another spec under a taken name
        { name: "Bad Name" },
      ];
      const results = await client.createVms(specs);
      const jobs = results.filter((r) => !(r instanceof VirtfleetError));
      const errors = results.filter((r) => r instanceof VirtfleetError).map((e) => (e as VirtfleetError).code);
      expect(jobs).toHaveLength(7);
      expect(errors.sort()).toEqual(["INVALID_SPEC", "NAME_CLASH", "NO_CAPACITY", "NO_CAPACITY"]);
      expect(await client.vms.get("taken")).toEqual(before);
      const keys = new Keys(prefix);
      let queued = 0;
      for (const host of ["h1", "h2"]) {
        const queue = new Queue(keys.hostQueue(host), { connection: { url: redisUrl }, prefix });
        queued += (await waitingJobs(queue)).length;
        await queue.close();
      }
      expect(queued).toBe(8); // 7 new and "taken"
      for (const job of jobs) {
        const events = await client.log.read((job as { id: string }).id);
        expect(events.map((e) => e.phase)).toEqual(["queued", "placed"]);
        expect(["h1", "h2"]).toContain(events[1]?.host);
        expect(events[1]?.message).toBe(`placed on host ${events[1]?.host}`);
      }
      // Refused VMs left no record and no claim behind.
      const refused = specs.filter((_, i) => (results[i] as VirtfleetError).code === "NO_CAPACITY");
      expect(refused).toHaveLength(2);
      for (const { name } of refused) {
        expect(await client.vms.get(name)).toBeUndefined();
        expect(await client.vms.ledger.claimants("h1")).not.toContain(name);
        expect(await client.vms.ledger.claimants("h2")).not.toContain(name);
      }
      const placed = await Promise.all(["h1", "h2"].map((h) => client.vms.ledger.claimants(h)));
      expect(placed.flat().sort()).toEqual((await client.vms.list()).map((v) => v.name).sort());
    } finally {
      await client.close();
    }
  });
});
