import type { Redis } from "ioredis";
import type { Keys } from "./keys.js";
import { runScript } from "./scripts.js";

// Claims room for a VM on the best of the given hosts that is up and has room, judged on the live
// numbers, atomically: no two claims can both fit the last of a host's room, and a burst of
// concurrent requests spreads (or packs) as it would one by one. Best: fewest VMs of the request's
// anti-affinity group, then by policy ('spread': most free memory, 'pack': least, 'order': the
// first in the given order), then the given order. A VM that already holds a claim keeps it.
// KEYS: group hash (or any key when there is no group), then per host: alloc hash, claims hash,
// live status, drain mark. ARGV: vm, memoryMiB, vcpus, policy, hasGroup ('1'/'0'), host ids...
// A host is a candidate only while its status lives and it is not drained.
const CLAIM = `
local mem = tonumber(ARGV[2])
local vcpus = tonumber(ARGV[3])
local policy = ARGV[4]
local grouped = ARGV[5] == '1'
local counts = {}
if grouped then
  for _, h in ipairs(redis.call('HVALS', KEYS[1])) do counts[h] = (counts[h] or 0) + 1 end
end
local best, bestCount, bestFree = nil, nil, nil
local n = (#KEYS - 1) / 4
for i = 1, n do
  local alloc, claims, status, drain = KEYS[(i - 1) * 4 + 2], KEYS[(i - 1) * 4 + 3], KEYS[(i - 1) * 4 + 4], KEYS[(i - 1) * 4 + 5]
  if redis.call('HEXISTS', claims, ARGV[1]) == 1 then return i end
  if redis.call('EXISTS', status) == 1 and redis.call('EXISTS', drain) == 0 then
    local capM = tonumber(redis.call('HGET', alloc, 'capMem') or '0')
    local capV = tonumber(redis.call('HGET', alloc, 'capVcpus') or '0')
    local m = tonumber(redis.call('HGET', alloc, 'mem') or '0')
    local v = tonumber(redis.call('HGET', alloc, 'vcpus') or '0')
    if m + mem <= capM and v + vcpus <= capV then
      local free = capM - m
      local c = counts[ARGV[5 + i]] or 0
      local better = best == nil or c < bestCount or
        (c == bestCount and ((policy == 'spread' and free > bestFree) or (policy == 'pack' and free < bestFree)))
      if better then best, bestCount, bestFree = i, c, free end
    end
  end
end
if best == nil then return 0 end
local alloc, claims = KEYS[(best - 1) * 4 + 2], KEYS[(best - 1) * 4 + 3]
redis.call('HINCRBY', alloc, 'mem', mem)
redis.call('HINCRBY', alloc, 'vcpus', vcpus)
redis.call('HSET', claims, ARGV[1], ARGV[2] .. ':' .. ARGV[3])
if grouped then redis.call('HSET', KEYS[1], ARGV[1], ARGV[5 + best]) end
return best
`;

// Gives a VM's room back, once. KEYS: alloc hash, claims hash. ARGV: vm.
const RELEASE = `
local c = redis.call('HGET', KEYS[2], ARGV[1])
if not c then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local sep = string.find(c, ':')
redis.call('HINCRBY', KEYS[1], 'mem', -tonumber(string.sub(c, 1, sep - 1)))
redis.call('HINCRBY', KEYS[1], 'vcpus', -tonumber(string.sub(c, sep + 1)))
return 1
`;

export interface Allocation {
  capacity: { memoryMiB: number; vcpus: number };
  allocated: { memoryMiB: number; vcpus: number };
}

/** Each host's room for VMs and what is claimed of it, kept in Redis and changed only atomically. */
export class CapacityLedger {
  readonly #redis: Redis;
  readonly #keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /** Written by the host's worker: the room it offers. */
  async setCapacity(hostId: string, memoryMiB: number, vcpus: number): Promise<void> {
    await this.#redis.hset(this.#keys.alloc(hostId), { capMem: String(memoryMiB), capVcpus: String(vcpus) });
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
    options: { policy?: "spread" | "pack" | "order"; group?: string } = {},
  ): Promise<string | undefined> {
    if (hostIds.length === 0) return undefined;
    const groupKey =
      options.group === undefined ? this.#keys.alloc(hostIds[0] as string) : this.#keys.group(options.group);
    const keys = [
      groupKey,
      ...hostIds.flatMap((h) => [
        this.#keys.alloc(h),
        this.#keys.claims(h),
        this.#keys.hostStatus(h),
        this.#keys.drain(h),
      ]),
    ];
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
    };
  }

  /** The VMs holding room on a host. */
  async claimants(hostId: string): Promise<string[]> {
    return this.#redis.hkeys(this.#keys.claims(hostId));
  }
}
