import fc from "fast-check";
import type { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { redisTest as test } from "../../../../test/fixtures/redis-test.js";
import { Keys } from "../redis/keys.js";
import { CapacityLedger, type RoomRequest } from "./capacity-ledger.js";
import { type PlacementHost, type PlacementPolicy, pickHost } from "./policy.js";

// The claim script (commands/claim-room.lua over includes/room.lua) must pick exactly what the model
// (policy.ts, pickHost) picks, on random fleets, and a sequence of claims and releases must keep the
// ledger exact and never overcommit a host.

const NOW = 1_800_000_000_000;
const CLASSES = ["c1", "c2", "c3"] as const;
const VMS = ["v1", "v2", "v3", "v4"] as const;

const hostArb = fc.record({
  hostClass: fc.option(fc.constantFrom(...CLASSES), { nil: undefined, freq: 6 }),
  // Few values, so hosts often tie on free memory (then the id decides).
  capMem: fc.constantFrom(0, 1024, 2048, 2048, 4096),
  memShare: fc.constantFrom(0, 0, 0.5, 1),
  capVcpus: fc.integer({ min: 1, max: 8 }),
  vcpuShare: fc.constantFrom(0, 0, 0.5, 1),
  capDisk: fc.option(fc.constantFrom(0, 10, 40), { nil: undefined, freq: 2 }),
  disk: fc.constantFrom(0, 5, 10),
  aliveUntil: fc.constantFrom(undefined, NOW - 1000, NOW, NOW + 1, ...Array<number>(12).fill(NOW + 60_000)),
  drained: fc.constantFrom(...Array<boolean>(7).fill(false), true),
  draining: fc.constantFrom(...Array<boolean>(7).fill(false), true),
});

/** Host ids that sort differently by bytes and by locale (upper and lower case, digits, dots). */
const idsArb = fc.uniqueArray(fc.stringMatching(/^[aAbB0.][aAbB0.-]{0,2}$/), { minLength: 1, maxLength: 16 });

const fleetArb = idsArb.chain((ids) =>
  fc.record({
    ids: fc.constant(ids),
    hosts: fc.array(hostArb, { minLength: ids.length, maxLength: ids.length }),
    // Other VMs of the group "g", on random hosts (or on a host that is not registered).
    groupMembers: fc.array(fc.constantFrom(...ids, "gone"), { maxLength: 10 }),
  }),
);

const claimArb = (ids: readonly string[]) =>
  fc.record({
    op: fc.constant("claim" as const),
    vm: fc.constantFrom(...VMS),
    memoryMiB: fc.constantFrom(0, 256, 512, 512, 1024, 2048),
    vcpus: fc.integer({ min: 0, max: 2 }),
    diskGiB: fc.constantFrom(0, 0, 5, 20),
    policy: fc.constantFrom<PlacementPolicy>("spread", "pack", "order"),
    grouped: fc.boolean(),
    held: fc.boolean(),
    candidates: fc.oneof(
      fc.record({
        classes: fc.subarray([...CLASSES], { minLength: 1 }),
        exclude: fc.subarray([...ids], { maxLength: Math.min(2, ids.length) }),
      }),
      fc.record({ hosts: fc.array(fc.constantFrom(...ids), { maxLength: 6 }) }),
    ),
  });

const releaseArb = (ids: readonly string[]) =>
  fc.record({ op: fc.constant("release" as const), vm: fc.constantFrom(...VMS), host: fc.constantFrom(...ids) });

interface Model {
  hosts: Map<string, PlacementHost>;
  claims: Map<string, { host: string; mem: number; vcpus: number; disk: number }>;
  group: Map<string, string>;
}

async function writeFleet(redis: Redis, keys: Keys, m: Model): Promise<void> {
  const tx = redis.multi();
  for (const h of m.hosts.values()) {
    tx.hset(keys.placementHosts(), {
      [`${h.id}.capMem`]: h.capMem,
      [`${h.id}.capVcpus`]: h.capVcpus,
      [`${h.id}.mem`]: h.mem,
      [`${h.id}.vcpus`]: h.vcpus,
      [`${h.id}.disk`]: h.disk,
      [`${h.id}.draining`]: h.draining ? "1" : "0",
      ...(h.capDisk === undefined ? {} : { [`${h.id}.capDisk`]: h.capDisk }),
      ...(h.hostClass === undefined ? {} : { [`${h.id}.class`]: h.hostClass }),
    });
    if (h.hostClass !== undefined) tx.zadd(keys.placementFree(h.hostClass), h.capMem - h.mem, h.id);
    if (h.aliveUntil !== undefined) tx.zadd(keys.placementAlive(), h.aliveUntil, h.id);
    if (h.drained) tx.sadd(keys.placementDrained(), h.id);
  }
  for (const [vm, host] of m.group) tx.hset(keys.group("g"), vm, host);
  await tx.exec();
}

/** The model's effect of a claim that picked `host` (as take_room does). */
function take(
  m: Model,
  r: { vm: string; memoryMiB: number; vcpus: number; diskGiB: number; grouped: boolean },
  host: string,
) {
  const prev = m.claims.get(r.vm);
  if (prev?.host === host) return;
  if (prev !== undefined) release(m, r.vm, prev.host);
  const h = m.hosts.get(host) as PlacementHost;
  h.mem += r.memoryMiB;
  h.vcpus += r.vcpus;
  h.disk += r.diskGiB;
  m.claims.set(r.vm, { host, mem: r.memoryMiB, vcpus: r.vcpus, disk: r.diskGiB });
  if (r.grouped) m.group.set(r.vm, host);
}

function release(m: Model, vm: string, host: string): boolean {
  const c = m.claims.get(vm);
  if (c === undefined || c.host !== host) return false;
  m.claims.delete(vm);
  const h = m.hosts.get(host);
  if (h !== undefined) {
    h.mem -= c.mem;
    h.vcpus -= c.vcpus;
    h.disk -= c.disk;
  }
  return true;
}

describe("placement policy: the Lua picks what the model picks", () => {
  test("random fleets and sequences of claims and releases", async ({ redis, prefix }) => {
    let run = 0;
    const stats = { none: 0, picked: 0 };
    await fc.assert(
      fc.asyncProperty(
        fleetArb.chain((fleet) =>
          fc.record({
            fleet: fc.constant(fleet),
            ops: fc.array(fc.oneof({ weight: 4, arbitrary: claimArb(fleet.ids) }, releaseArb(fleet.ids)), {
              minLength: 1,
              maxLength: 8,
            }),
          }),
        ),
        async ({ fleet, ops }) => {
          const keys = new Keys(`${prefix}-${run}`);
          // Walk pages of 1 to 8 hosts: a tie of free memory that ends within a page, or runs past it.
          const ledger = new CapacityLedger(redis, keys, { page: [1, 2, 3, 8][run++ % 4] as number });
          const m: Model = { hosts: new Map(), claims: new Map(), group: new Map() };
          fleet.ids.forEach((id, i) => {
            const g = fleet.hosts[i] as (typeof fleet.hosts)[number];
            const mem = Math.floor(g.capMem * g.memShare);
            m.hosts.set(id, {
              id,
              hostClass: g.hostClass,
              capMem: g.capMem,
              capVcpus: g.capVcpus,
              capDisk: g.capDisk,
              mem,
              vcpus: Math.floor(g.capVcpus * g.vcpuShare),
              disk: g.capDisk === undefined ? g.disk : Math.min(g.disk, g.capDisk),
              aliveUntil: g.aliveUntil,
              drained: g.drained,
              draining: g.draining,
            });
          });
          for (const [i, h] of fleet.groupMembers.entries()) m.group.set(`member-${i}`, h);
          await writeFleet(redis, keys, m);

          for (const op of ops) {
            if (op.op === "release") {
              const expected = release(m, op.vm, op.host);
              expect(await ledger.release(op.host, op.vm)).toBe(expected);
              continue;
            }
            const request: RoomRequest & { now: number } = {
              vm: op.vm,
              memoryMiB: op.memoryMiB,
              vcpus: op.vcpus,
              diskGiB: op.diskGiB,
              policy: op.policy,
              group: op.grouped ? "g" : undefined,
              held: op.held,
              now: NOW,
              candidates: op.candidates,
            };
            const expected = pickHost(
              {
                hosts: m.hosts,
                claims: new Map([...m.claims].map(([vm, c]) => [vm, c.host])),
                group: op.grouped ? m.group : undefined,
              },
              request,
            );
            const got = await ledger.claimRoom(request);
            expect(got, JSON.stringify({ request, hosts: [...m.hosts.values()] })).toBe(expected);
            if (expected !== undefined) take(m, op, expected);
            stats[expected === undefined ? "none" : "picked"]++;
          }

          // Redis holds exactly the model's ledger, its index is in step, and nothing is overcommitted.
          const room = await redis.hgetall(keys.placementHosts());
          for (const h of m.hosts.values()) {
            expect(Number(room[`${h.id}.mem`])).toBe(h.mem);
            expect(Number(room[`${h.id}.vcpus`])).toBe(h.vcpus);
            expect(Number(room[`${h.id}.disk`])).toBe(h.disk);
            expect(h.mem).toBeLessThanOrEqual(h.capMem);
            expect(h.vcpus).toBeLessThanOrEqual(h.capVcpus);
            if (h.capDisk !== undefined) expect(h.disk).toBeLessThanOrEqual(h.capDisk);
            if (h.hostClass !== undefined)
              expect(Number(await redis.zscore(keys.placementFree(h.hostClass), h.id))).toBe(h.capMem - h.mem);
          }
          const claims = await redis.hgetall(keys.placementClaims());
          expect(claims).toEqual(
            Object.fromEntries([...m.claims].map(([vm, c]) => [vm, `${c.host}:${c.mem}:${c.vcpus}:${c.disk}`])),
          );
        },
      ),
      { numRuns: 300, seed: 15_2026 },
    );
    // The fleets are varied enough that many claims find a host and many do not.
    expect(stats.picked).toBeGreaterThan(200);
    expect(stats.none).toBeGreaterThan(200);
  });
});
