// Per-create Redis time of admission at 4 hosts and at 1,000 hosts (prints; asserts nothing):
// 10,000 creates each, Redis's own time in the admission script (INFO commandstats, evalsha usec)
// divided by the creates. Run: npm run build && npx tsx packages/fleet/scripts/placement-cost.ts
import { Redis } from "ioredis";
import { hostStatus } from "../../../test/fixtures/host-status.js";
import { LocalRedis } from "../../../test/fixtures/redis-server.js";
import { CapacityLedger, FleetClient, HostRegistry, Keys } from "../src/index.js";

const CREATES = Number(process.env.PLACEMENT_COST_CREATES ?? 10_000);

async function evalUsec(redis: Redis): Promise<number> {
  const info = await redis.info("commandstats");
  let usec = 0;
  for (const m of info.matchAll(/^cmdstat_(evalsha|eval):calls=\d+,usec=(\d+)/gm)) usec += Number(m[2]);
  return usec;
}

async function measure(url: string, hostCount: number): Promise<number> {
  const prefix = `cost-${hostCount}`;
  const keys = new Keys(prefix);
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  const client = new FleetClient({ redisUrl: url, prefix, placementCacheMs: 60_000 });
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
    const before = await evalUsec(redis);
    for (let start = 0; start < CREATES; start += 500) {
      const specs = Array.from({ length: Math.min(500, CREATES - start) }, (_, j) => ({
        name: `vm-${start + j}`,
        memoryMiB: 256,
        vcpus: 1,
        disks: [{ sizeGiB: 1 }],
      }));
      await Promise.all(specs.map((s) => client.createVm(s)));
    }
    return (await evalUsec(redis)) - before;
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
      usecPerCreate4: small / CREATES,
      usecPerCreate1000: large / CREATES,
      costRatio1000To4: large / small,
    }),
  );
} finally {
  await local.stop();
}
