import { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { hostStatus } from "../../../../../test/fixtures/host-status.js";
import { privateRedis } from "../../../../../test/fixtures/private-redis.js";
import { redisTest as test } from "../../../../../test/fixtures/redis-test.js";
import { HostRegistry } from "../../hosts/host-registry.js";
import { Keys } from "../../redis/keys.js";
import { CapacityLedger, type RoomRequest } from "../capacity-ledger.js";
import { hostClass } from "../host-class.js";

const request = (vm: string, classes: string[], extra: Partial<RoomRequest> = {}): RoomRequest => ({
  vm,
  memoryMiB: 256,
  vcpus: 1,
  diskGiB: 0,
  policy: "spread",
  held: true,
  candidates: { classes },
  ...extra,
});

// A Redis of this file's own, for counting the hosts a claim reads (INFO commandstats) undisturbed.
const local = privateRedis();

// claim-room.lua over the class indexes (the model test compares it with pickHost on random fleets).
describe("claim-room", () => {
  test("over classes: spreads by free memory across classes, skips hosts down, drained or left out, and never overcommits under a concurrent burst", async ({
    redisUrl,
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const hosts = new HostRegistry(redis, keys);
    const ledger = new CapacityLedger(redis, keys);
    const zones = { "pl-a1": "a", "pl-a2": "a", "pl-b1": "b", "pl-b2": "b" } as const;
    const memory = { "pl-a1": 2048, "pl-a2": 1024, "pl-b1": 1536, "pl-b2": 1536 } as const;
    for (const [id, zone] of Object.entries(zones)) {
      await ledger.setCapacity(id, memory[id as keyof typeof memory], 64);
      await hosts.heartbeat(hostStatus(id, { labels: { zone } }), 60_000);
    }
    const a = hostClass(hostStatus("x", { labels: { zone: "a" } }));
    const b = hostClass(hostStatus("x", { labels: { zone: "b" } }));

    expect(await ledger.claimRoom(request("s1", [a, b]))).toBe("pl-a1"); // 2048 free
    expect(await ledger.claimRoom(request("s2", [a, b]))).toBe("pl-a1"); // 1792 free
    // a1, b1 and b2 now tie at 1536 free: the smallest id wins.
    expect(await ledger.claimRoom(request("s3", [a, b]))).toBe("pl-a1");
    expect(await ledger.claimRoom(request("s4", [b]))).toBe("pl-b1");
    expect(await ledger.claimRoom(request("p1", [a, b], { policy: "pack" }))).toBe("pl-a2");
    // Only class b; b2 left out.
    expect(await ledger.claimRoom(request("x1", [b], { candidates: { classes: [b], exclude: ["pl-b2"] } }))).toBe(
      "pl-b1",
    );
    // Drained and down hosts are skipped.
    await hosts.drain("pl-b1");
    await hosts.markDown("pl-b2");
    expect(await ledger.claimRoom(request("x2", [b]))).toBeUndefined();
    // A VM holding a claim keeps it.
    expect(await ledger.claimRoom(request("s1", [a, b]))).toBe("pl-a1");
    await hosts.drain("pl-b1", false);

    // A burst from several connections: every claim fits, the ledger is exact.
    const extra = Array.from({ length: 3 }, () => new Redis(redisUrl, { maxRetriesPerRequest: null }));
    try {
      const ledgers = [ledger, ...extra.map((c) => new CapacityLedger(c, keys))];
      const got = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          (ledgers[i % ledgers.length] as CapacityLedger).claimRoom(request(`burst-${i}`, [a, b], { memoryMiB: 128 })),
        ),
      );
      expect(got.filter((h) => h === "pl-b2")).toEqual([]);
      for (const id of ["pl-a1", "pl-a2", "pl-b1"]) {
        const room = await ledger.get(id);
        expect(room.allocated.memoryMiB).toBeLessThanOrEqual(room.capacity.memoryMiB);
        const claimants = await ledger.claimants(id);
        const burst = got.filter((h) => h === id).length;
        expect(claimants.filter((vm) => vm.startsWith("burst-"))).toHaveLength(burst);
        expect(Number(await redis.zscore(keys.placementFree(id === "pl-b1" ? b : a), id))).toBe(
          room.capacity.memoryMiB - room.allocated.memoryMiB,
        );
      }
      // 2048+1024+1536 MiB less the 6 claims of 256 MiB before, in 128 MiB claims: full.
      expect(got.filter((h) => h !== undefined).length).toBe((2048 + 1024 + 1536 - 6 * 256) / 128);
    } finally {
      for (const c of extra) c.disconnect();
    }
  });

  test("anti-affinity over classes: a host without the group's VMs first, else the host with the fewest", async ({
    redis,
    prefix,
  }) => {
    const keys = new Keys(prefix);
    const hosts = new HostRegistry(redis, keys);
    const ledger = new CapacityLedger(redis, keys);
    for (const id of ["pl-g1", "pl-g2"]) {
      await ledger.setCapacity(id, 4096, 8);
      await hosts.heartbeat(hostStatus(id), 60_000);
    }
    const cls = hostClass(hostStatus("x"));
    const grouped = (vm: string) => ledger.claimRoom(request(vm, [cls], { group: "web", policy: "pack" }));
    const first = await grouped("w1");
    const second = await grouped("w2");
    expect(new Set([first, second])).toEqual(new Set(["pl-g1", "pl-g2"]));
    await ledger.claim(["pl-g1"], "big", 1024, 1); // g1 now has less free memory
    // Both hold one: pack picks the fuller one; then the other has fewer.
    expect(await grouped("w3")).toBe("pl-g1");
    expect(await grouped("w4")).toBe("pl-g2");
    expect(await redis.hgetall(keys.group("web"))).toEqual({ w1: first, w2: second, w3: "pl-g1", w4: "pl-g2" });
  });
});

describe("claim-room reads a handful of hosts", () => {
  test("spread over equal hosts reads one host (the smallest id, from its block's end), whether the block ends within a page or runs past it", async ({
    prefix,
  }) => {
    const redis = local.redis;
    const keys = new Keys(prefix);
    const hosts = new HostRegistry(redis, keys);
    for (let i = 0; i < 20; i++) {
      const id = `rd-h${String(i).padStart(2, "0")}`;
      await new CapacityLedger(redis, keys).setCapacity(id, 4096, 64);
      await hosts.heartbeat(hostStatus(id), 60_000);
    }
    const cls = hostClass(hostStatus("x"));
    /** The host a claim picks, and how many hosts' numbers it read (one HMGET each). */
    const claim = async (page: number, vm: string) => {
      await redis.config("RESETSTAT");
      const host = await new CapacityLedger(redis, keys, { page }).claimRoom(request(vm, [cls]));
      const stats = await redis.info("commandstats");
      return { host, reads: Number(/cmdstat_hmget:calls=(\d+)/.exec(stats)?.[1] ?? 0) };
    };
    // 20 hosts tie: the block runs past a page of 8 (walked again upward), or ends within one of 32.
    expect(await claim(8, "v1")).toEqual({ host: "rd-h00", reads: 1 });
    expect(await claim(32, "v2")).toEqual({ host: "rd-h01", reads: 1 });
    // A block with no usable host is passed over: the walk goes on below it.
    for (let i = 2; i < 20; i++) await hosts.drain(`rd-h${String(i).padStart(2, "0")}`);
    expect((await claim(8, "v3")).host).toBe("rd-h00");
  });
});
