import { describe, expect, vi } from "vitest";
import { hostStatus } from "../../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { HostRegistry } from "../hosts/host-registry.js";
import { FleetClient } from "../producer/fleet-client.js";
import { Keys } from "../redis/keys.js";
import { hostClass } from "./host-class.js";

const VM = { memoryMiB: 256, vcpus: 1, disks: [{ sizeGiB: 1 }] };

/** `n` hosts per zone, each with room for 4 VMs, up as their workers would put them. */
async function fleet(client: FleetClient, zones: Record<string, number>): Promise<void> {
  for (const [zone, n] of Object.entries(zones)) {
    for (let i = 0; i < n; i++) {
      const id = `pc-${zone}${i}`;
      await client.vms.ledger.setCapacity(id, 1024, 4, 10);
      await client.hosts.heartbeat(hostStatus(id, { labels: { zone } }), 60_000);
    }
  }
}

describe("placement reads the eligibility classes, not every host", () => {
  test("each heartbeat keeps its class's first status in the classes hash", async ({ redis, prefix }) => {
    const keys = new Keys(prefix);
    const hosts = new HostRegistry(redis, keys);
    await hosts.heartbeat(hostStatus("pc-1", { labels: { zone: "a" } }), 60_000);
    await hosts.heartbeat(hostStatus("pc-2", { labels: { zone: "a" } }), 60_000);
    await hosts.heartbeat(hostStatus("pc-3", { labels: { zone: "b" } }), 60_000);
    const classes = await hosts.classes();
    const a = hostClass(hostStatus("x", { labels: { zone: "a" } }));
    const b = hostClass(hostStatus("x", { labels: { zone: "b" } }));
    expect([...classes.keys()].sort()).toEqual([a, b].sort());
    // The first host of a class stays its example: hosts of a class are alike for eligibility.
    expect(classes.get(a)?.hostId).toBe("pc-1");
    expect(classes.get(b)?.labels).toEqual({ zone: "b" });
    // What is not a status is left out.
    await redis.hset(keys.placementClasses(), "junk", "{not json");
    expect((await hosts.classes()).size).toBe(2);
  });

  test("creates by label and spread never read the hosts list; a pinned create and a refusal do", async ({
    redisUrl,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      await fleet(client, { a: 3, b: 3 });
      const list = vi.spyOn(client.hosts, "list");
      const answers = await client.createVms(
        Array.from({ length: 6 }, (_, i) => ({ ...VM, name: `pc-vm${i}` })),
        { labels: { zone: "b" } },
      );
      expect(answers.filter((a) => a instanceof Error)).toEqual([]);
      expect(new Set((await client.vms.list()).map((v) => v.hostId))).toEqual(new Set(["pc-b0", "pc-b1", "pc-b2"]));
      expect(list).not.toHaveBeenCalled();

      // A pinned host is looked up in the list.
      await client.createVm({ ...VM, name: "pc-pinned" }, { host: "pc-a2" });
      expect((await client.vms.get("pc-pinned"))?.hostId).toBe("pc-a2");
      expect(list).toHaveBeenCalled();

      // A refusal is explained from it: no host has the label.
      await expect(client.createVm({ ...VM, name: "pc-nowhere" }, { labels: { zone: "c" } })).rejects.toMatchObject({
        code: "NO_CAPACITY",
      });
    } finally {
      vi.restoreAllMocks();
      await client.close();
    }
  });

  test("a fleet whose hosts have not beaten since an upgrade (no classes kept) is placed from the hosts list", async ({
    redisUrl,
    redis,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix });
    try {
      await fleet(client, { a: 2 });
      await redis.del(new Keys(prefix).placementClasses());
      const list = vi.spyOn(client.hosts, "list");
      const answers = await client.createVms([
        { ...VM, name: "pc-u1" },
        { ...VM, name: "pc-u2" },
      ]);
      expect(answers.filter((a) => a instanceof Error)).toEqual([]);
      expect(new Set((await client.vms.list()).map((v) => v.hostId))).toEqual(new Set(["pc-a0", "pc-a1"]));
      expect(list).toHaveBeenCalledTimes(1);
    } finally {
      vi.restoreAllMocks();
      await client.close();
    }
  });
});
