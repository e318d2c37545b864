import { VirtfleetError } from "@virtfleet/core";
import type { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { waitingIds } from "../../../../test/fixtures/host-queue.js";
import { hostUp } from "../../../../test/fixtures/host-status.js";
import { redisTest } from "../../../../test/fixtures/redis-test.js";
import { FleetClient } from "../producer/fleet-client.js";
import { BATCH_TTL_SEC, REFUSED_BATCH_TTL_SEC } from "../records/batches.js";

/** `test` with `client`: a FleetClient on the test's prefix, closed after the test. */
const test = redisTest.extend<{ client: FleetClient }>({
  client: async ({ redisUrl, prefix }, use) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      await use(client);
    } finally {
      await client.close();
    }
  },
});

const spec = (name: string, diskGiB = 1) => ({ name, memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: diskGiB }] });

/** What Redis holds under a prefix: the sum of MEMORY USAGE of its keys, in bytes. */
async function bytesUnder(redis: Redis, prefix: string): Promise<number> {
  let total = 0;
  for (const key of await redis.keys(`${prefix}:*`)) total += (await redis.memory("USAGE", key)) ?? 0;
  return total;
}

async function refusal(p: Promise<unknown>): Promise<VirtfleetError> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(VirtfleetError);
  return error as VirtfleetError;
}

describe("admission: tenants, pending jobs, disk, bounds", () => {
  test("an admitted create: the job's record (its fields and the `placed` event's) with its TTL, `queued` then `placed` in its stream", async ({
    redis,
    client,
  }) => {
    await hostUp(client, "ad-h1");
    const job = await client.createVm(spec("ad-rec"), { tenant: "acme", callbackUrl: "http://127.0.0.1:1/cb" });
    const record = await client.log.getJob(job.id);
    expect(record).toMatchObject({
      jobId: job.id,
      kind: "create",
      vm: "ad-rec",
      hostId: "ad-h1",
      tenant: "acme",
      callbackUrl: "http://127.0.0.1:1/cb",
      phase: "placed",
      message: "placed on host ad-h1",
    });
    expect(await redis.ttl(client.keys.job(job.id))).toBeGreaterThan(3600);
    expect(await redis.ttl(client.keys.jobEvents(job.id))).toBeGreaterThan(3600);
    const events = await client.log.read(job.id);
    expect(events.map((e) => [e.phase, e.message, e.host])).toEqual([
      ["queued", "accepted", undefined],
      ["placed", "placed on host ad-h1", "ad-h1"],
    ]);
    expect((await client.vms.get("ad-rec"))?.hostId).toBe("ad-h1");
  });

  test("a name is its tenant's: another tenant asking the same spec gets NAME_CLASH that names no host, job or tenant", async ({
    client,
  }) => {
    await hostUp(client, "ad-host");
    const mine = await client.createVm(spec("ad-shared"), { tenant: "acme" });
    // The owner asking again gets its own job back.
    expect((await client.createVm(spec("ad-shared"), { tenant: "acme" })).id).toBe(mine.id);
    const error = await refusal(client.createVm(spec("ad-shared"), { tenant: "globex" }));
    expect(error.code).toBe("NAME_CLASH");
    expect(error.field).toBe("spec.name");
    const text = JSON.stringify(error.toInfo());
    expect(text).not.toContain("ad-host");
    expect(text).not.toContain(mine.id);
    expect(text).not.toContain("acme");
    // Through a batch too: the item is refused, and carries no job.
    const batch = await client.createBatch([spec("ad-shared")], { tenant: "globex" });
    expect(batch.items[0]?.jobId).toBeUndefined();
    expect(batch.items[0]?.error?.code).toBe("NAME_CLASH");
    expect(JSON.stringify(await client.getBatch(batch.batchId))).not.toContain(mine.id);
    // An operator (no tenant) asking a tenant's VM is not that tenant either.
    expect((await refusal(client.createVm(spec("ad-shared")))).code).toBe("NAME_CLASH");
  });

  test("an enqueue that fails after admission gives room, quota and name back, and a retry gets a job in the queue", async ({
    redisUrl,
    prefix,
    redis,
    client,
  }) => {
    await hostUp(client, "ad-h1");
    // BullMQ's wait list of the host is not a list: its add fails after our admission succeeded.
    const wait = `${prefix}:${client.keys.hostQueue("ad-h1")}:wait`;
    await redis.set(wait, "not a list");
    const error = await refusal(client.createVm(spec("ad-ghost"), { tenant: "acme", quota: { vms: 1 } }));
    expect(error.code).toBe("INTERNAL");
    expect(await client.vms.get("ad-ghost")).toBeUndefined();
    expect((await client.vms.quotas.usage("acme")).vms).toBe(0);
    expect((await client.vms.ledger.get("ad-h1")).allocated).toEqual({ memoryMiB: 0, vcpus: 0 });
    expect(await redis.zcard(client.keys.pendingJobs())).toBe(0);

    await redis.del(wait);
    const retry = await client.createVm(spec("ad-ghost"), { tenant: "acme", quota: { vms: 1 } });
    expect(await waitingIds(redisUrl, prefix, "ad-h1")).toEqual([retry.id]);
  });

  test("disk: a tenant's diskGiB quota is enforced and given back; 16 × 64 TiB finds no host and enqueues nothing", async ({
    redisUrl,
    prefix,
    client,
  }) => {
    await hostUp(client, "ad-h1", {}, { diskGiB: 500 });
    const quota = { diskGiB: 10 };
    const first = await client.createVm(spec("ad-d1", 8), { tenant: "acme", quota });
    const over = await refusal(client.createVm(spec("ad-d2", 4), { tenant: "acme", quota }));
    expect(over.code).toBe("QUOTA_EXCEEDED");
    expect(over.field).toBe("quota.diskGiB");
    expect((await client.vms.quotas.usage("acme")).diskGiB).toBe(8);
    expect(await client.cancelJob(first.id)).toBe("cancelled");
    expect((await client.vms.quotas.usage("acme")).diskGiB).toBe(0);
    expect((await client.vms.ledger.get("ad-h1")).disk.allocatedGiB).toBe(0);
    await client.createVm(spec("ad-d2", 4), { tenant: "acme", quota });

    const huge = {
      name: "ad-huge",
      memoryMiB: 256,
      vcpus: 1,
      disks: Array.from({ length: 16 }, () => ({ sizeGiB: 65536 })),
    };
    const before = await waitingIds(redisUrl, prefix, "ad-h1");
    const refused = await refusal(client.createVm(huge, { tenant: "globex" }));
    expect(refused.code).toBe("NO_CAPACITY");
    expect(await waitingIds(redisUrl, prefix, "ad-h1")).toEqual(before);
    expect(await client.vms.get("ad-huge")).toBeUndefined();
    expect((await client.vms.ledger.get("ad-h1")).disk.allocatedGiB).toBe(4);
  });

  test("bounded inputs: labels (count), guestReady timeout and capacity wait are refused naming the field", async ({
    client,
  }) => {
    await hostUp(client, "ad-h1");
    const labels = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, "v"]));
    expect(await refusal(client.createVm({ ...spec("ad-l"), labels }))).toMatchObject({
      code: "INVALID_SPEC",
      field: "spec.labels",
    });
    expect(await refusal(client.createVm(spec("ad-g"), { guestReady: { timeoutSec: 3600 } }))).toMatchObject({
      code: "INVALID_SPEC",
      field: "guestReady.timeoutSec",
    });
    expect(await refusal(client.createVm(spec("ad-w"), { waitForCapacityMs: 3_600_000 }))).toMatchObject({
      code: "INVALID_SPEC",
      field: "waitForCapacityMs",
    });
    expect(await client.vms.list()).toEqual([]);
  });

  test("Redis memory: a refused batch keeps a few bytes per item for an hour; a max-label VM costs a bounded few KB", async ({
    prefix,
    redis,
    client,
  }) => {
    // Hosts that are up but full: every item is refused with a long NO_CAPACITY explanation.
    for (let i = 0; i < 20; i++) {
      await hostUp(client, `ad-full-host-with-a-long-name-${i}`);
      await client.vms.ledger.setCapacity(`ad-full-host-with-a-long-name-${i}`, 0, 0);
    }
    const base = await bytesUnder(redis, prefix);
    const names = Array.from({ length: 500 }, (_, i) => `ad-refused-${i}`);
    const refused = await client.createBatch(
      names.map((n) => spec(n)),
      { tenant: "acme" },
    );
    expect(refused.items.every((i) => i.error?.code === "NO_CAPACITY")).toBe(true);
    const perItem = ((await bytesUnder(redis, prefix)) - base) / names.length;
    expect(perItem).toBeLessThan(400);
    expect(await redis.ttl(client.keys.batch(refused.batchId))).toBeLessThanOrEqual(REFUSED_BATCH_TTL_SEC);
    expect(await redis.ttl(client.keys.batchItems(refused.batchId))).toBeLessThanOrEqual(REFUSED_BATCH_TTL_SEC);

    // 10 VMs with the most labels allowed, each as long as allowed.
    await hostUp(client, "ad-roomy");
    await client.vms.ledger.setCapacity("ad-roomy", 65536, 64);
    const labels = Object.fromEntries(
      Array.from({ length: 32 }, (_, i) => [`k${String(i).padStart(2, "0")}${"k".repeat(60)}`, "v".repeat(63)]),
    );
    const before = await bytesUnder(redis, prefix);
    const batch = await client.createBatch(
      Array.from({ length: 10 }, (_, i) => ({ ...spec(`ad-labels-${i}`), labels })),
      { tenant: "acme" },
    );
    expect(batch.items.every((i) => i.jobId !== undefined)).toBe(true);
    const perVm = ((await bytesUnder(redis, prefix)) - before) / 10;
    // The VM's record and the job's payload each hold the labels (~4.2 KB as JSON; the record's hash
    // then leaves Redis's compact encoding), plus the job's record, events and batch line: ~26 KB.
    expect(perVm).toBeLessThan(32 * 1024);
    expect(await redis.ttl(client.keys.batch(batch.batchId))).toBeGreaterThan(REFUSED_BATCH_TTL_SEC);
    expect(await redis.ttl(client.keys.batch(batch.batchId))).toBeLessThanOrEqual(BATCH_TTL_SEC);
  });

  test("a tenant keeps at most maxBatches batches: the oldest ended one makes room; running ones are never dropped", async ({
    client,
  }) => {
    const refusedOnly = await client.createBatch([spec("ad-b0")], { tenant: "acme", maxBatches: 2 }); // no host: refused
    await hostUp(client, "ad-h1");
    const running1 = await client.createBatch([spec("ad-b1")], { tenant: "acme", maxBatches: 2 });
    // Full: the refused (ended) batch goes.
    const running2 = await client.createBatch([spec("ad-b2")], { tenant: "acme", maxBatches: 2 });
    expect(await client.getBatch(refusedOnly.batchId)).toBeUndefined();
    expect(await client.getBatch(running1.batchId)).toBeDefined();
    // Full of running batches: refused, nothing written.
    const error = await refusal(client.createBatch([spec("ad-b3")], { tenant: "acme", maxBatches: 2 }));
    expect(error).toMatchObject({ code: "QUOTA_EXCEEDED", field: "quota.batches" });
    expect(await client.vms.get("ad-b3")).toBeUndefined();
    expect(await client.getBatch(running2.batchId)).toBeDefined();
    // Another tenant has its own count.
    await client.createBatch([spec("ad-b4")], { tenant: "globex", maxBatches: 2 });
  });
});
