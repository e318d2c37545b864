import type { Redis } from "ioredis";
import type { Keys } from "./keys.js";

// Claims room for a VM on the first host, in the given order, that is up and has it. Atomic: no two
// claims can both fit the last of a host's room. A VM that already holds a claim on a host keeps it.
// KEYS: per host, 3 keys: alloc hash, claims hash, live status. ARGV: vm, memoryMiB, vcpus.
const CLAIM = `
local mem = tonumber(ARGV[2])
local vcpus = tonumber(ARGV[3])
for i = 1, #KEYS, 3 do
  local alloc, claims, status = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  if redis.call('HEXISTS', claims, ARGV[1]) == 1 then return (i - 1) / 3 + 1 end
  if redis.call('EXISTS', status) == 1 then
    local capM = tonumber(redis.call('HGET', alloc, 'capMem') or '0')
    local capV = tonumber(redis.call('HGET', alloc, 'capVcpus') or '0')
    local m = tonumber(redis.call('HGET', alloc, 'mem') or '0')
    local v = tonumber(redis.call('HGET', alloc, 'vcpus') or '0')
    if m + mem <= capM and v + vcpus <= capV then
      redis.call('HINCRBY', alloc, 'mem', mem)
      redis.call('HINCRBY', alloc, 'vcpus', vcpus)
      redis.call('HSET', claims, ARGV[1], ARGV[2] .. ':' .. ARGV[3])
      return (i - 1) / 3 + 1
    end
  end
end
return 0
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

  /** Claims the VM's room on the first of `hostIds` that is up and has it; returns that host, or undefined. */
  async claim(hostIds: readonly string[], vm: string, memoryMiB: number, vcpus: number): Promise<string | undefined> {
    if (hostIds.length === 0) return undefined;
    const keys = hostIds.flatMap((h) => [this.#keys.alloc(h), this.#keys.claims(h), this.#keys.hostStatus(h)]);
    const index = (await this.#redis.eval(CLAIM, keys.length, ...keys, vm, String(memoryMiB), String(vcpus))) as number;
    return index === 0 ? undefined : hostIds[index - 1];
  }

  /** Gives the VM's room on the host back; true if it held any. Safe to call twice. */
  async release(hostId: string, vm: string): Promise<boolean> {
    return (await this.#redis.eval(RELEASE, 2, this.#keys.alloc(hostId), this.#keys.claims(hostId), vm)) === 1;
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
