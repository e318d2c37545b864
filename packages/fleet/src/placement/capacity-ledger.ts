import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";
import { runScript } from "../redis/scripts.js";

// Lua: finds room for a VM on the best of the given hosts that is up and has room, judged on the
// live numbers. Best: fewest VMs of the request's anti-affinity group, then by policy ('spread':
// most free memory, 'pack': least, 'order': the first in the given order), then the given order. A
// VM that already holds a claim keeps it (looked for only with `held`: a name just admitted holds
// none). A host is a candidate only while its status lives and it is not drained. `hk(i)` gives
// the keys of host `ids[i]`: alloc hash, claims hash, live status, drain mark. Returns the host's
// index in `ids` (1-based), or 0. `take_room` then claims it. Shared by the claim script below and
// the admission script.
export const ROOM_LUA = `
local function find_room(hk, ids, vm, mem, vcpus, policy, groupKey, held, disk)
  disk = disk or 0
  local counts = {}
  if groupKey then
    for _, h in ipairs(redis.call('HVALS', groupKey)) do counts[h] = (counts[h] or 0) + 1 end
  end
  local best, bestCount, bestFree = 0, nil, nil
  for i = 1, #ids do
    local alloc, claims, status, drain = hk(i)
    if held and redis.call('HEXISTS', claims, vm) == 1 then return i end
    local a = redis.call('HMGET', alloc, 'capMem', 'capVcpus', 'mem', 'vcpus', 'capDisk', 'disk')
    local capM, capV = tonumber(a[1] or '0'), tonumber(a[2] or '0')
    local m, v = tonumber(a[3] or '0'), tonumber(a[4] or '0')
    -- A host that publishes no disk capacity (an older worker) is not limited by disk.
    local diskFits = a[5] == false or tonumber(a[6] or '0') + disk <= tonumber(a[5])
    if m + mem <= capM and v + vcpus <= capV and diskFits then
      local free = capM - m
      local c = counts[ids[i]] or 0
      local better = best == 0 or c < bestCount or
        (c == bestCount and ((policy == 'spread' and free > bestFree) or (policy == 'pack' and free < bestFree)))
      -- Liveness and drain are looked at only for a host that would be the best so far.
      if better and redis.call('EXISTS', status) == 1 and redis.call('EXISTS', drain) == 0 then
        best, bestCount, bestFree = i, c, free
      end
    end
  end
  return best
end
local function take_room(hk, ids, i, vm, mem, vcpus, groupKey, disk)
  disk = disk or 0
  local alloc, claims = hk(i)
  if redis.call('HEXISTS', claims, vm) == 1 then return end
  redis.call('HINCRBY', alloc, 'mem', mem)
  redis.call('HINCRBY', alloc, 'vcpus', vcpus)
  redis.call('HINCRBY', alloc, 'disk', disk)
  local claim = mem .. ':' .. vcpus
  if disk > 0 then claim = claim .. ':' .. disk end
  redis.call('HSET', claims, vm, claim)
  if groupKey then redis.call('HSET', groupKey, vm, ids[i]) end
end
-- A claim's "mem:vcpus[:disk]" (older claims have no disk part).
local function parse_claim(c)
  local m, v, d = string.match(c, '^(-?%d+):(-?%d+):?(-?%d*)$')
  return tonumber(m) or 0, tonumber(v) or 0, tonumber(d) or 0
end
`;

/** The KEYS `find_room` reads for each host, in its order. */
export function roomKeys(keys: Keys, hostIds: readonly string[]): string[] {
  return hostIds.flatMap((h) => [keys.alloc(h), keys.claims(h), keys.hostStatus(h), keys.drain(h)]);
}

// Claims room for a VM on the best host (see ROOM_LUA), atomically: no two claims can both fit the
// last of a host's room, and a burst of concurrent requests spreads (or packs) as it would one by
// one. KEYS: group hash (or any key when there is no group), then four per host (see ROOM_LUA).
// ARGV: vm, memoryMiB, vcpus, policy, hasGroup ('1'/'0'), diskGiB, host ids...
const CLAIM = `${ROOM_LUA}
local ids = {}
for i = 7, #ARGV do ids[#ids + 1] = ARGV[i] end
local disk = tonumber(ARGV[6])
local groupKey = nil
if ARGV[5] == '1' then groupKey = KEYS[1] end
local mem, vcpus = tonumber(ARGV[2]), tonumber(ARGV[3])
local function hk(i)
  local b = 2 + (i - 1) * 4
  return KEYS[b], KEYS[b + 1], KEYS[b + 2], KEYS[b + 3]
end
local best = find_room(hk, ids, ARGV[1], mem, vcpus, ARGV[4], groupKey, true, disk)
if best == 0 then return 0 end
take_room(hk, ids, best, ARGV[1], mem, vcpus, groupKey, disk)
return best
`;

// Gives a VM's room back, once. KEYS: alloc hash, claims hash. ARGV: vm.
const RELEASE = `${ROOM_LUA}
local c = redis.call('HGET', KEYS[2], ARGV[1])
if not c then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local m, v, d = parse_claim(c)
redis.call('HINCRBY', KEYS[1], 'mem', -m)
redis.call('HINCRBY', KEYS[1], 'vcpus', -v)
if d ~= 0 then redis.call('HINCRBY', KEYS[1], 'disk', -d) end
return 1
`;

export interface Allocation {
  capacity: { memoryMiB: number; vcpus: number };
  allocated: { memoryMiB: number; vcpus: number };
  /** Disk room in GiB: `capacityGiB` is undefined when the host publishes none (not limited by disk). */
  disk: { capacityGiB: number | undefined; allocatedGiB: number };
}

/** Each host's room for VMs and what is claimed of it, kept in Redis and changed only atomically. */
export class CapacityLedger {
  readonly #redis: Redis;
  readonly #keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /** Written by the host's worker: the room it offers (disk in GiB; left out, the host is not limited by disk). */
  async setCapacity(hostId: string, memoryMiB: number, vcpus: number, diskGiB?: number): Promise<void> {
    await this.#redis.hset(this.#keys.alloc(hostId), {
      capMem: String(memoryMiB),
      capVcpus: String(vcpus),
      ...(diskGiB === undefined ? {} : { capDisk: String(Math.floor(diskGiB)) }),
    });
  }

  /**
   * Claims the VM's room on the best of `hostIds` that is up and has it (see the script above);
   * returns that host, or undefined when none has room. Default policy `order`: the first that fits.
   */
  async claim(
    hostIds: readonly string[],
    vm: string,
    memoryMiB: number,
    vcpus: number,
    options: { policy?: "spread" | "pack" | "order"; group?: string; diskGiB?: number } = {},
  ): Promise<string | undefined> {
    if (hostIds.length === 0) return undefined;
    const groupKey =
      options.group === undefined ? this.#keys.alloc(hostIds[0] as string) : this.#keys.group(options.group);
    const keys = [groupKey, ...roomKeys(this.#keys, hostIds)];
    const index = (await runScript(
      this.#redis,
      CLAIM,
      keys.length,
      ...keys,
      vm,
      String(memoryMiB),
      String(vcpus),
      options.policy ?? "order",
      options.group === undefined ? "0" : "1",
      String(options.diskGiB ?? 0),
      ...hostIds,
    )) as number;
    return index === 0 ? undefined : hostIds[index - 1];
  }

  /** Gives the VM's room on the host back; true if it held any. Safe to call twice. */
  async release(hostId: string, vm: string): Promise<boolean> {
    return (await runScript(this.#redis, RELEASE, 2, this.#keys.alloc(hostId), this.#keys.claims(hostId), vm)) === 1;
  }

  async get(hostId: string): Promise<Allocation> {
    const h = await this.#redis.hgetall(this.#keys.alloc(hostId));
    return {
      capacity: { memoryMiB: Number(h.capMem ?? 0), vcpus: Number(h.capVcpus ?? 0) },
      allocated: { memoryMiB: Number(h.mem ?? 0), vcpus: Number(h.vcpus ?? 0) },
      disk: { capacityGiB: h.capDisk === undefined ? undefined : Number(h.capDisk), allocatedGiB: Number(h.disk ?? 0) },
    };
  }

  /** The VMs holding room on a host. */
  async claimants(hostId: string): Promise<string[]> {
    return this.#redis.hkeys(this.#keys.claims(hostId));
  }
}
