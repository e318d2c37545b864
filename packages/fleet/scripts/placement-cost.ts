// Per-create Redis time at 4 hosts and at 1,000 hosts (prints; asserts nothing): 10,000 creates
// each (PLACEMENT_COST_CREATES), Redis's own time (INFO commandstats usec: in scripts, and in every
// command, which counts the hosts list reads too) divided by the creates. The hosts list is
// cached as FleetClient does by default (PLACEMENT_COST_CACHE_MS, default 1000).
// Run: npx tsx packages/fleet/scripts/placement-cost.ts
import { Redis } from "ioredis";
import { hostStatus } from "../../../test/fixtures/host-status.js";
import { LocalRedis } from "../../../test/fixtures/redis-server.js";
import { CapacityLedger, FleetClient, HostRegistry, Keys } from "../src/index.js";

const CREATES = Number(process.env.PLACEMENT_COST_CREATES ?? 10_000);
const CACHE_MS = Number(process.env.PLACEMENT_COST_CACHE_MS ?? 1000);

/** Redis's time so far (µs): in scripts, and in every command. */
async function usec(redis: Redis): Promise<{ scripts: number; all: number }> {
  const info = await redis.info("commandstats");
  const out = { scripts: 0, all: 0 };
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=\d+,usec=(\d+)/gm)) {
    out.all += Number(m[2]);
    if (m[1] === "evalsha" || m[1] === "eval") out.scripts += Number(m[2]);
  }
  return out;
}

async function measure(url: string, hostCount: number): Promise<{ scripts: number; all: number }> {
  const prefix = `cost-${hostCount}`;
  const keys = new Keys(prefix);
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  const client = new FleetClient({ redisUrl: url, prefix, placementCacheMs: CACHE_MS });
  try {
    const hosts = new HostRegistry(redis, keys);
    const ledger = new CapacityLedger(redis, keys);
    // Room for every create either way: the same total, spread over the hosts.
    const memoryMiB = Math.ceil((CREATES * 256 * 2) / hostCount);
    await Promise.all(
      Array.from({ length: hostCount }, async (_, i) => {
        const id = `c${String(i).padStart(4, "0")}`;
        await ledger.setCapacity(id, memoryMiB, 1_000_000);
        await hosts.heartbeat(hostStatus(id, { labels: { zone: `z${i % 4}` } }), 3_600_000);
      }),
    );
    await client.createVm({ name: "warm", memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: 1 }] });
    const before = await usec(redis);
    for (let start = 0; start < CREATES; start += 500) {
      const specs = Array.from({ length: Math.min(500, CREATES - start) }, (_, j) => ({
        name: `vm-${start + j}`,
        memoryMiB: 256,
        vcpus: 1,
        disks: [{ sizeGiB: 1 }],
      }));
      await Promise.all(specs.map((s) => client.createVm(s)));
    }
    const after = await usec(redis);
    return { scripts: after.scripts - before.scripts, all: after.all - before.all };
  } finally {
    await client.close();
    redis.disconnect();
  }
}

const local = await LocalRedis.start({ appendonly: false });
try {
  const small = await measure(local.url, 4);
  const large = await measure(local.url, 1000);
  console.log(
    JSON.stringify({
      creates: CREATES,
      scriptUsecPerCreate4: small.scripts / CREATES,
      scriptUsecPerCreate1000: large.scripts / CREATES,
      allUsecPerCreate4: small.all / CREATES,
      allUsecPerCreate1000: large.all / CREATES,
      costRatio1000To4: large.all / small.all,
    }),
  );
} finally {
  await local.stop();
}
