import { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { Keys } from "../redis/keys.js";
import { CapacityLedger } from "./capacity-ledger.js";

/** Marks a host up: alive for a minute in the placement index. */
async function up(redis: Redis, keys: Keys, hostId: string): Promise<void> {
  await redis.zadd(keys.placementAlive(), Date.now() + 60_000, hostId);
}

/** The room recorded in a host's claims, summed, and how many VMs hold it (claims: vm → "mem:vcpus"). */
async function claimed(redis: Redis, keys: Keys, hostId: string) {
  const claims: Record<string, string> = {};
  let memoryMiB = 0;
  let vcpus = 0;
  for (const [vm, value] of Object.entries(await redis.hgetall(keys.placementClaims()))) {
    const match = /^(.*):(\d+):(\d+):(\d+)$/.exec(value);
    expect(match, `claim value "${value}" of ${vm}`).not.toBeNull();
    if (match?.[1] !== hostId) continue;
    claims[vm] = `${match[2]}:${match[3]}`;
    memoryMiB += Number(match[2]);
    vcpus += Number(match[3]);
  }
  return { memoryMiB, vcpus, count: Object.keys(claims).length, claims };
}

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)] as T;
}

function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

describe("CapacityLedger", () => {
  test("never over-commits a host under thousands of concurrent claims", async ({ redisUrl, prefix, redis }) => {
    const keys = new Keys(prefix);
    const capacities: Record<string, { memoryMiB: number; vcpus: number }> = {
      h1: { memoryMiB: 10240, vcpus: 10 },
      h2: { memoryMiB: 5120, vcpus: 5 },
      h3: { memoryMiB: 2048, vcpus: 8 },
    };
    const hostIds = Object.keys(capacities);
    const setup = new CapacityLedger(redis, keys);
    for (const h of hostIds) {
      const cap = capacities[h] as { memoryMiB: number; vcpus: number };
      await setup.setCapacity(h, cap.memoryMiB, cap.vcpus);
      await up(redis, keys, h);
    }

    const extra = Array.from({ length: 4 }, () => new Redis(redisUrl, { maxRetriesPerRequest: null }));
    try {
      const ledgers = [setup, ...extra.map((c) => new CapacityLedger(c, keys))];
      const total = 5000;
      const results = await Promise.all(
        Array.from({ length: total }, (_, i) => {
          const ledger = ledgers[i % ledgers.length] as CapacityLedger;
          const memoryMiB = pick([256, 512, 1024]);
          const vcpus = pick([1, 2]);
          const order = shuffled(hostIds);
          return ledger
            .claim(order, `vm-${i}`, memoryMiB, vcpus)
            .then((host) => ({ vm: `vm-${i}`, host, order, memoryMiB, vcpus }));
        }),
      );

      // Every answer is one of the hosts asked, or undefined.
      for (const r of results) if (r.host !== undefined) expect(r.order).toContain(r.host);

      let recorded = 0;
      for (const h of hostIds) {
        const cap = capacities[h] as { memoryMiB: number; vcpus: number };
        const { capacity, allocated } = await setup.get(h);
        const sum = await claimed(redis, keys, h);
        expect(capacity, h).toEqual(cap);
        expect(allocated, h).toEqual({ memoryMiB: sum.memoryMiB, vcpus: sum.vcpus });
        expect(allocated.memoryMiB, h).toBeLessThanOrEqual(cap.memoryMiB);
        expect(allocated.vcpus, h).toBeLessThanOrEqual(cap.vcpus);
        // Nearly full: no claim of the smallest size (256 MiB, 1 vCPU) would fit any more.
        expect(
          allocated.memoryMiB + 256 > cap.memoryMiB || allocated.vcpus + 1 > cap.vcpus,
          `${h} should be full: ${JSON.stringify(allocated)} of ${JSON.stringify(cap)}`,
        ).toBe(true);

        // The claims hash records exactly the VMs told they got this host, with their size.
        const winners = results.filter((r) => r.host === h);
        expect(sum.count, h).toBe(winners.length);
        for (const w of winners) expect(sum.claims[w.vm], w.vm).toBe(`${w.memoryMiB}:${w.vcpus}`);
        expect(await setup.claimants(h)).toHaveLength(winners.length);
        recorded += sum.count;
      }

      const succeeded = results.filter((r) => r.host !== undefined).length;
      expect(succeeded).toBe(recorded);
      expect(succeeded).toBeGreaterThan(0);
      // 17 GiB and 23 vCPUs in all: most of 5000 claims are refused.
      expect(succeeded).toBeLessThan(total);
      expect(succeeded).toBeLessThanOrEqual(23);
      // No VM holds room on two hosts.
      const holders = new Set<string>();
      for (const h of hostIds) {
        for (const vm of await setup.claimants(h)) {
          expect(holders.has(vm), vm).toBe(false);
          holders.add(vm);
        }
      }
      expect(holders.size).toBe(succeeded);
    } finally {
      for (const c of extra) c.disconnect();
    }
  });

  test("claims the first host in order that is up and has room", async ({ prefix, redis }) => {
    const keys = new Keys(prefix);
    const ledger = new CapacityLedger(redis, keys);
    await ledger.setCapacity("small", 1024, 2);
    await ledger.setCapacity("big", 8192, 8);
    await up(redis, keys, "small");
    await up(redis, keys, "big");

    expect(await ledger.claim(["small", "big"], "a", 1024, 1)).toBe("small");
    expect(await ledger.claim(["small", "big"], "b", 512, 1)).toBe("big");
    expect(await ledger.claim(["big", "small"], "c", 512, 1)).toBe("big");
    expect((await ledger.get("small")).allocated).toEqual({ memoryMiB: 1024, vcpus: 1 });
    expect((await ledger.get("big")).allocated).toEqual({ memoryMiB: 1024, vcpus: 2 });
    expect((await ledger.claimants("big")).sort()).toEqual(["b", "c"]);
  });

  test("refuses a claim that would exceed the memory or the vCPUs", async ({ prefix, redis }) => {
    const keys = new Keys(prefix);
    const ledger = new CapacityLedger(redis, keys);
    await ledger.setCapacity("h1", 2048, 2);
    await up(redis, keys, "h1");

    expect(await ledger.claim(["h1"], "too-big", 2049, 1)).toBeUndefined();
    expect(await ledger.claim(["h1"], "too-many", 512, 3)).toBeUndefined();
    expect(await ledger.claim(["h1"], "exact", 2048, 2)).toBe("h1");
    expect(await ledger.claim(["h1"], "one-more", 64, 1)).toBeUndefined();
    expect((await ledger.get("h1")).allocated).toEqual({ memoryMiB: 2048, vcpus: 2 });
    expect(await ledger.claimants("h1")).toEqual(["exact"]);
  });

  test("a host with no capacity set takes nothing", async ({ prefix, redis }) => {
    const keys = new Keys(prefix);
    const ledger = new CapacityLedger(redis, keys);
    await up(redis, keys, "h1");
    expect(await ledger.claim(["h1"], "vm", 64, 1)).toBeUndefined();
    expect(await ledger.get("h1")).toEqual({
      capacity: { memoryMiB: 0, vcpus: 0 },
      allocated: { memoryMiB: 0, vcpus: 0 },
      disk: { capacityGiB: undefined, allocatedGiB: 0 },
    });
  });

  test("release gives the room back exactly once", async ({ prefix, redis }) => {
    const keys = new Keys(prefix);
    const ledger = new CapacityLedger(redis, keys);
    await ledger.setCapacity("h1", 4096, 4);
    await up(redis, keys, "h1");

    expect(await ledger.claim(["h1"], "keep", 1024, 1)).toBe("h1");
    expect(await ledger.claim(["h1"], "gone", 2048, 2)).toBe("h1");
    expect((await ledger.get("h1")).allocated).toEqual({ memoryMiB: 3072, vcpus: 3 });

    expect(await ledger.release("h1", "gone")).toBe(true);
    expect((await ledger.get("h1")).allocated).toEqual({ memoryMiB: 1024, vcpus: 1 });
    expect(await ledger.claimants("h1")).toEqual(["keep"]);

    expect(await ledger.release("h1", "gone")).toBe(false);
    expect((await ledger.get("h1")).allocated).toEqual({ memoryMiB: 1024, vcpus: 1 });
    expect(await ledger.claimants("h1")).toEqual(["keep"]);

    // A VM that never held room here, and a host never seen, release nothing.
    expect(await ledger.release("h1", "stranger")).toBe(false);
    expect(await ledger.release("nowhere", "keep")).toBe(false);
    expect((await ledger.get("h1")).allocated).toEqual({ memoryMiB: 1024, vcpus: 1 });

    // The room given back can be claimed again, in full.
    expect(await ledger.claim(["h1"], "next", 3072, 3)).toBe("h1");
    expect((await ledger.get("h1")).allocated).toEqual({ memoryMiB: 4096, vcpus: 4 });
  });

  test("concurrent releases of the same VM release it once", async ({ redisUrl, prefix, redis }) => {
    const keys = new Keys(prefix);
    const ledger = new CapacityLedger(redis, keys);
    await ledger.setCapacity("h1", 8192, 8);
    await up(redis, keys, "h1");
    expect(await ledger.claim(["h1"], "other", 512, 1)).toBe("h1");
    expect(await ledger.claim(["h1"], "vm", 2048, 2)).toBe("h1");

    const second = new Redis(redisUrl, { maxRetriesPerRequest: null });
    try {
      const ledgers = [ledger, new CapacityLedger(second, keys)];
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => (ledgers[i % 2] as CapacityLedger).release("h1", "vm")),
      );
      expect(results.filter((r) => r)).toHaveLength(1);
      expect(results.filter((r) => !r)).toHaveLength(49);
    } finally {
      second.disconnect();
    }
    expect((await ledger.get("h1")).allocated).toEqual({ memoryMiB: 512, vcpus: 1 });
    expect(await ledger.claimants("h1")).toEqual(["other"]);
  });

  test("a VM that holds a claim on a host claims it again without counting twice", async ({ prefix, redis }) => {
    const keys = new Keys(prefix);
    const ledger = new CapacityLedger(redis, keys);
    await ledger.setCapacity("h1", 2048, 2);
    await up(redis, keys, "h1");

    expect(await ledger.claim(["h1"], "vm", 1536, 2)).toBe("h1");
    // There is no room for a second 1536 MiB, 2 vCPU claim, yet the holder gets its host back.
    expect(await ledger.claim(["h1"], "vm", 1536, 2)).toBe("h1");
    expect(await ledger.claim(["h1"], "vm", 1536, 2)).toBe("h1");
    expect((await ledger.get("h1")).allocated).toEqual({ memoryMiB: 1536, vcpus: 2 });
    expect((await claimed(redis, keys, "h1")).claims).toEqual({ vm: "1536:2" });

    // Concurrent repeats count once too.
    const again = await Promise.all(Array.from({ length: 20 }, () => ledger.claim(["h1"], "vm", 1536, 2)));
    expect(new Set(again)).toEqual(new Set(["h1"]));
    expect((await ledger.get("h1")).allocated).toEqual({ memoryMiB: 1536, vcpus: 2 });

    // And one release gives it all back.
    expect(await ledger.release("h1", "vm")).toBe(true);
    expect((await ledger.get("h1")).allocated).toEqual({ memoryMiB: 0, vcpus: 0 });
  });

  test("skips a host that is down", async ({ prefix, redis }) => {
    const keys = new Keys(prefix);
    const ledger = new CapacityLedger(redis, keys);
    await ledger.setCapacity("down", 8192, 8);
    await ledger.setCapacity("live", 2048, 2);
    await up(redis, keys, "live");

    expect(await ledger.claim(["down", "live"], "a", 1024, 1)).toBe("live");
    expect(await ledger.claim(["down"], "b", 1024, 1)).toBeUndefined();
    expect((await ledger.get("down")).allocated).toEqual({ memoryMiB: 0, vcpus: 0 });
    expect(await ledger.claimants("down")).toEqual([]);
    expect((await ledger.get("live")).allocated).toEqual({ memoryMiB: 1024, vcpus: 1 });

    // Once its heartbeat is live, the host takes claims again; once it expires, it does not.
    await up(redis, keys, "down");
    expect(await ledger.claim(["down", "live"], "c", 1024, 1)).toBe("down");
    await redis.zadd(keys.placementAlive(), Date.now() - 1, "down");
    expect(await ledger.claim(["down"], "d", 1024, 1)).toBeUndefined();
    expect((await ledger.get("down")).allocated).toEqual({ memoryMiB: 1024, vcpus: 1 });
  });

  test("a claim on no hosts is refused and changes nothing", async ({ prefix, redis }) => {
    const keys = new Keys(prefix);
    const ledger = new CapacityLedger(redis, keys);
    await ledger.setCapacity("h1", 2048, 2);
    await up(redis, keys, "h1");

    expect(await ledger.claim([], "vm", 512, 1)).toBeUndefined();
    expect((await ledger.get("h1")).allocated).toEqual({ memoryMiB: 0, vcpus: 0 });
    expect(await redis.hlen(keys.placementClaims())).toBe(0);
  });

  test("keeps each prefix's ledger apart", async ({ prefix, redis }) => {
    const mine = new CapacityLedger(redis, new Keys(prefix));
    const theirs = new CapacityLedger(redis, new Keys(`${prefix}-other`));
    await mine.setCapacity("h1", 1024, 1);
    await theirs.setCapacity("h1", 1024, 1);
    await up(redis, new Keys(prefix), "h1");
    await up(redis, new Keys(`${prefix}-other`), "h1");

    expect(await mine.claim(["h1"], "vm", 1024, 1)).toBe("h1");
    expect(await theirs.claim(["h1"], "vm", 1024, 1)).toBe("h1");
    expect(await mine.release("h1", "vm")).toBe(true);
    expect((await theirs.get("h1")).allocated).toEqual({ memoryMiB: 1024, vcpus: 1 });
  });

  test("a concurrent burst spreads evenly by live free room, and an anti-affinity group takes distinct hosts", async ({
    prefix,
    redis,
  }) => {
    const keys = new Keys(prefix);
    const ledger = new CapacityLedger(redis, keys);
    for (const h of ["h1", "h2", "h3"]) {
      await ledger.setCapacity(h, 2560, 10);
      await up(redis, keys, h);
    }
    const hosts = await Promise.all(
      Array.from({ length: 30 }, (_, i) => ledger.claim(["h1", "h2", "h3"], `s${i}`, 256, 1, { policy: "spread" })),
    );
    const per = (h: string) => hosts.filter((x) => x === h).length;
    expect([per("h1"), per("h2"), per("h3")]).toEqual([10, 10, 10]);
    for (const i of [0, 1, 2]) await ledger.release(["h1", "h2", "h3"][i] as string, `s${i}`);

    const group = await Promise.all(
      ["g1", "g2", "g3"].map((vm) => ledger.claim(["h1", "h2", "h3"], vm, 256, 1, { policy: "pack", group: "web" })),
    );
    expect(new Set(group).size).toBe(3);
    expect(await redis.hgetall(keys.group("web"))).toEqual({ g1: group[0], g2: group[1], g3: group[2] });
  });

  test("a VM holding room on one host is never given room on another too", async ({ prefix, redis }) => {
    const keys = new Keys(prefix);
    const ledger = new CapacityLedger(redis, keys);
    for (const h of ["h1", "h2"]) {
      await ledger.setCapacity(h, 4096, 4);
      await up(redis, keys, h);
    }
    expect(await ledger.claim(["h2"], "vm", 512, 1)).toBe("h2");
    expect(await ledger.claim(["h1", "h2"], "vm", 512, 1, { policy: "spread" })).toBe("h2");
    expect((await ledger.get("h1")).allocated).toEqual({ memoryMiB: 0, vcpus: 0 });
  });

  test("disk room: parallel claims never over-commit a host's disk, release gives it back, and a host publishing no disk capacity is not limited", async ({
    redisUrl,
    prefix,
    redis,
  }) => {
    const keys = new Keys(prefix);
    const setup = new CapacityLedger(redis, keys);
    // Plenty of memory and vCPUs: disk is the only limit.
    await setup.setCapacity("d1", 1_000_000, 10_000, 100);
    await setup.setCapacity("d2", 1_000_000, 10_000, 50);
    await up(redis, keys, "d1");
    await up(redis, keys, "d2");
    const extra = Array.from({ length: 4 }, () => new Redis(redisUrl, { maxRetriesPerRequest: null }));
    try {
      const ledgers = [setup, ...extra.map((c) => new CapacityLedger(c, keys))];
      const results = await Promise.all(
        Array.from({ length: 500 }, (_, i) => {
          const diskGiB = pick([1, 3, 7]);
          return (ledgers[i % ledgers.length] as CapacityLedger)
            .claim(shuffled(["d1", "d2"]), `vm-${i}`, 64, 1, { diskGiB })
            .then((host) => ({ host, diskGiB }));
        }),
      );
      for (const [h, cap] of [
        ["d1", 100],
        ["d2", 50],
      ] as const) {
        const placed = results.filter((r) => r.host === h).reduce((sum, r) => sum + r.diskGiB, 0);
        const { disk } = await setup.get(h);
        expect(disk).toEqual({ capacityGiB: cap, allocatedGiB: placed });
        expect(placed).toBeLessThanOrEqual(cap);
        // Full up to the smallest disk asked for.
        expect(placed).toBeGreaterThan(cap - 1);
      }
      expect(results.some((r) => r.host === undefined)).toBe(true);

      const first = results.findIndex((r) => r.host === "d1");
      const before = (await setup.get("d1")).disk.allocatedGiB;
      expect(await setup.release("d1", `vm-${first}`)).toBe(true);
      expect(await setup.release("d1", `vm-${first}`)).toBe(false);
      expect((await setup.get("d1")).disk.allocatedGiB).toBe(before - (results[first]?.diskGiB ?? 0));
    } finally {
      for (const c of extra) c.disconnect();
    }

    // An older worker publishes no disk capacity: not limited by disk.
    await setup.setCapacity("old", 4096, 4);
    await up(redis, keys, "old");
    expect(await setup.claim(["old"], "huge", 64, 1, { diskGiB: 16 * 65536 })).toBe("old");
  });
});
