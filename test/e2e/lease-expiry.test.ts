import { randomUUID } from "node:crypto";
import type { LeaseView, StreamedEvent } from "@virtfleet/core";
import { createRedis, FleetClient } from "@virtfleet/fleet";
import { LabKeys, LeaseEvents, LeaseStore, Reaper } from "@virtfleet/labs";
import type { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { domainState, type FleetEnv, filesIn, startWorker, tinySpec, until, type WorkerProcess } from "./harness.js";
import { domainsNamed, forceCleanNamed } from "./prefixed-cleanup.js";

// A lease that expires destroys its VM exactly once, through a worker restart, with two reapers.
const PREFIX = "rp-lx-";
const fleet: FleetEnv = {
  redisUrl: inject("redisUrl"),
  prefix: `test-${randomUUID()}`,
  imageDir: inject("imageDir"),
  testRoot: inject("testRoot"),
};
const logger = pino({ level: "silent" });
// The worker runs no controller of its own here: the test's two reapers are the fleet's.
const workerEnv = { VIRTFLEET_CONTROLLER: "0" };
let worker: WorkerProcess;
let client: FleetClient;
let redis: Redis;
const storageDirs: string[] = [];

beforeAll(async () => {
  worker = await startWorker(fleet, { env: workerEnv });
  storageDirs.push(worker.storageDir);
  client = new FleetClient({ redisUrl: fleet.redisUrl, prefix: fleet.prefix });
  redis = createRedis({ url: fleet.redisUrl });
});

afterAll(async () => {
  redis?.disconnect();
  await client?.close();
  await worker?.stop();
  await forceCleanNamed(PREFIX, storageDirs);
});

afterEach(async () => {
  const domains = await domainsNamed(PREFIX);
  const files = await filesIn(worker.storageDir);
  if (domains.length + files.length > 0) await forceCleanNamed(PREFIX);
  expect({ domains, files }).toEqual({ domains: [], files: [] });
});

/** Every event of every job so far. */
async function allEvents(): Promise<StreamedEvent[]> {
  const out: StreamedEvent[] = [];
  let after = "0";
  for (;;) {
    const { events, lastEntry } = await client.log.readAll(after, undefined);
    if (lastEntry === after) return out;
    out.push(...events);
    after = lastEntry;
  }
}

describe("lease expiry end to end", () => {
  it("a claim lease of a few seconds expires and its VM is destroyed once, through a worker restart", async () => {
    const name = `${PREFIX}${randomUUID().slice(0, 6)}`;
    const done = await (await client.createVm(tinySpec(name))).wait({ timeoutMs: 120_000 });
    expect(done.phase, worker.logs()).toBe("done");
    expect(await domainState(name)).toBe("running");

    const keys = new LabKeys(fleet.prefix);
    const leases = new LeaseStore(redis, keys);
    const deps = { redis, keys, fleet: client, leases, logger };
    const handled: string[] = [];
    const handler = {
      async expire(lease: LeaseView) {
        handled.push(lease.id);
        const job = await client.destroyVm(lease.target);
        const end = await job.wait({ timeoutMs: 120_000 });
        if (end.phase !== "done") throw new Error(`destroy ${end.phase}`);
      },
    };
    const reapers = [1, 2].map(
      () => new Reaper({ deps, handlers: { claim: handler }, intervalMs: 200, orphanSweepMs: 0 }),
    );
    const lease = await leases.create({
      kind: "claim",
      target: name,
      pool: "rp-pool",
      ttlMs: 3000,
      maxLifetimeMs: 60_000,
    });

    // The worker goes away before the lease expires, and comes back while the reapers wait on it.
    await worker.stop();
    let ticking = true;
    const loops = reapers.map(async (r) => {
      while (ticking) {
        await r.tick();
        await new Promise((res) => setTimeout(res, 200));
      }
    });
    await until("the lease taken", async () => (handled.length > 0 ? true : undefined), 15_000);
    worker = await startWorker(fleet, { hostId: worker.hostId, env: workerEnv });
    await until(
      "the lease ended",
      async () => ((await leases.get(lease.id)) === undefined ? true : undefined),
      120_000,
    );
    ticking = false;
    await Promise.all(loops);

    expect(await domainState(name)).toBeUndefined();
    expect(await client.vms.get(name)).toBeUndefined();
    expect(handled).toEqual([lease.id]);
    const destroys = (await allEvents()).filter((e) => e.kind === "destroy" && e.vm === name && e.phase === "queued");
    expect(destroys).toHaveLength(1);
    const events = new LeaseEvents(redis, keys, logger);
    const expired = (await events.list()).filter((e) => e.leaseId === lease.id);
    expect(expired).toHaveLength(1);
    expect(expired[0]).toMatchObject({ type: "lease.expired", kind: "claim", target: name, pool: "rp-pool" });
    expect(await events.expiries()).toEqual({ claim: 1 });
  });
});
