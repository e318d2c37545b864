import { describe, expect } from "vitest";
import { hostUp } from "../../../../test/fixtures/host-status.js";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { FleetClient } from "../producer/fleet-client.js";

const spec = (name: string, memoryMiB = 256) => ({
  name,
  memoryMiB,
  vcpus: 1,
  disks: [{ sizeGiB: 1, backing: "im-deb" }],
});

describe("placement with the image catalogue", () => {
  test("an image no host holds: IMAGE_NOT_FOUND until catalogued; then any host may take it, one that holds it first", async ({
    redisUrl,
    prefix,
  }) => {
    const client = new FleetClient({ redisUrl, prefix, placementCacheMs: 0 });
    try {
      // "roomy" has far more free memory (spread would pick it) but lacks the image.
      await hostUp(client, "roomy", { memoryMiB: { total: 65_536, capacity: 65_536 }, images: [] });
      await hostUp(client, "holder", { images: ["im-deb.qcow2"] });
      await hostUp(client, "other", { images: [] });

      await expect(
        client.createVm({ ...spec("im-p0"), disks: [{ sizeGiB: 1, backing: "im-none" }] }),
      ).rejects.toMatchObject({
        code: "IMAGE_NOT_FOUND",
        field: "spec.disks.0.backing",
      });

      // Not catalogued: only the host that holds it.
      const first = await client.createVm(spec("im-p1"));
      expect((await client.log.read(first.id))[1]?.host).toBe("holder");

      await client.images.importUrl({ name: "im-deb", url: "https://images.example.org/deb.qcow2" });
      // Catalogued: the holder still comes first while it has room...
      const second = await client.createVm(spec("im-p2"));
      expect((await client.log.read(second.id))[1]?.host).toBe("holder");
      // ...and when it has none, a host that lacks the image takes it (it pulls first), by policy.
      const third = await client.createVm(spec("im-p3", 8192));
      expect((await client.log.read(third.id))[1]?.host).toBe("roomy");
      // Pinned to a host that lacks a catalogued image: allowed.
      const pinned = await client.createVm(spec("im-p4"), { host: "other" });
      expect((await client.log.read(pinned.id))[1]?.host).toBe("other");
    } finally {
      await client.close();
    }
  });
});
