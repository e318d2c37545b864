import { randomUUID } from "node:crypto";
import type { LeaseView } from "@virtfleet/core";
import { createRedis, FleetClient } from "@virtfleet/fleet";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { LocalRedis } from "../../../../test/fixtures/redis-server.js";
import { LabKeys } from "../keys.js";
import { LeaseEvents } from "../leases/lease-events.js";
import { LeaseStore } from "../leases/lease-store.js";
import { Reaper } from "./reaper.js";

const logger = pino({ level: "silent" });

describe("Reaper through a Redis crash and a dead reaper", () => {
  it("ends every expired lease exactly once, recording each expiry once", async () => {
    const local = await LocalRedis.start({ appendonly: true });
    const redis = createRedis({ url: local.url });
    const prefix = `test-${randomUUID()}`;
    const keys = new LabKeys(prefix);
    const fleet = new FleetClient({ redisUrl: local.url, prefix });
    try {
      const leases = new LeaseStore(redis, keys);
      const ids: string[] = [];
      for (let i = 0; i < 20; i++)
        ids.push(
          (
            await leases.create(
              { kind: "claim", target: `rp-r-${i}`, ttlMs: 1, maxLifetimeMs: 60_000 },
              Date.now() - 5000,
            )
          ).id,
        );
      const deps = { redis, keys, fleet, leases, logger };
      const calls = new Map<string, number>();
      let gate: () => void = () => undefined;
      const opened = new Promise<void>((r) => {
        gate = r;
      });
      let blocking = true;
      const handler = {
        async expire(lease: LeaseView) {
          calls.set(lease.id, (calls.get(lease.id) ?? 0) + 1);
          if (blocking) await opened;
        },
      };
      // A reaper that takes 5 leases and dies before finishing them (its handler never returns).
      const dead = new Reaper({
        deps,
        handlers: { claim: { expire: () => new Promise(() => undefined) } },
        batch: 5,
        orphanSweepMs: 0,
      });
      void dead.tick();
      await new Promise((r) => setTimeout(r, 200));
      // A live reaper takes the rest; Redis crashes while its handlers run, and comes back.
      const live = new Reaper({ deps, handlers: { claim: handler }, retryMs: 1000, orphanSweepMs: 0 });
      const first = live.tick();
      await new Promise((r) => setTimeout(r, 200));
      await local.kill();
      await local.resume();
      blocking = false;
      gate();
      await first;
      // The dead reaper's leases come back after retryMs (not recorded again).
      await new Promise((r) => setTimeout(r, 1100));
      await live.tick();
      await live.tick();
      expect(await leases.list()).toEqual([]);
      expect(await redis.zcard(keys.leasesReaping())).toBe(0);
      const handled = [...calls.keys()];
      expect(handled.sort()).toEqual([...ids].sort());
      expect([...calls.values()].every((n) => n === 1)).toBe(true);
      const events = new LeaseEvents(redis, keys, logger);
      expect((await events.list(1000)).map((e) => e.leaseId).sort()).toEqual([...ids].sort());
      expect(await events.expiries()).toEqual({ claim: 20 });
    } finally {
      await fleet.close();
      redis.disconnect();
      await local.stop();
    }
  }, 30_000);
});
