import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";
import { runScript } from "../redis/scripts.js";

export interface QuotaLimits {
  vms?: number | undefined;
  memoryMiB?: number | undefined;
  vcpus?: number | undefined;
  /** Total disk size of the tenant's VMs, in GiB. */
  diskGiB?: number | undefined;
}

export interface QuotaUsage {
  vms: number;
  memoryMiB: number;
  vcpus: number;
  diskGiB: number;
}

// Lua: a VM against its tenant's quota, for the admission script. `quota_check` returns 'ok' or the
// quota it would exceed (a VM already admitted is not counted twice); `quota_take` counts it. Usage
// hash (vms, mem, vcpus, disk) and per-VM hash ("mem:vcpus[:disk]") are keys the caller declared;
// limits are -1 for none.
export const QUOTA_LUA = `
local function quota_check(usage, perVm, vm, mem, vcpus, lv, lm, lc, disk, ld)
  if redis.call('HEXISTS', perVm, vm) == 1 then return 'ok' end
  local u = redis.call('HMGET', usage, 'vms', 'mem', 'vcpus', 'disk')
  if lv >= 0 and tonumber(u[1] or '0') + 1 > lv then return 'vms' end
  if lm >= 0 and tonumber(u[2] or '0') + mem > lm then return 'memoryMiB' end
  if lc >= 0 and tonumber(u[3] or '0') + vcpus > lc then return 'vcpus' end
  if ld >= 0 and tonumber(u[4] or '0') + disk > ld then return 'diskGiB' end
  return 'ok'
end
local function quota_take(usage, perVm, vm, mem, vcpus, disk)
  if redis.call('HEXISTS', perVm, vm) == 1 then return end
  redis.call('HINCRBY', usage, 'vms', 1)
  redis.call('HINCRBY', usage, 'mem', mem)
  redis.call('HINCRBY', usage, 'vcpus', vcpus)
  redis.call('HINCRBY', usage, 'disk', disk)
  local held = mem .. ':' .. vcpus
  if disk > 0 then held = held .. ':' .. disk end
  redis.call('HSET', perVm, vm, held)
end
`;

// Gives a VM's quota back, once. KEYS: usage hash, per-VM hash. ARGV: vm.
const RELEASE = `
local c = redis.call('HGET', KEYS[2], ARGV[1])
if not c then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local m, v, d = string.match(c, '^(-?%d+):(-?%d+):?(-?%d*)$')
redis.call('HINCRBY', KEYS[1], 'vms', -1)
redis.call('HINCRBY', KEYS[1], 'mem', -(tonumber(m) or 0))
redis.call('HINCRBY', KEYS[1], 'vcpus', -(tonumber(v) or 0))
redis.call('HINCRBY', KEYS[1], 'disk', -(tonumber(d) or 0))
return 1
`;

/** Tenants' use of their quotas (VM count, memory, vCPUs, disk), admitted and released atomically. */
export class QuotaLedger {
  readonly #redis: Redis;
  readonly #keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  async release(tenant: string, vm: string): Promise<boolean> {
    return (await runScript(this.#redis, RELEASE, 2, this.#keys.usage(tenant), this.#keys.usageVms(tenant), vm)) === 1;
  }

  async usage(tenant: string): Promise<QuotaUsage> {
    const h = await this.#redis.hgetall(this.#keys.usage(tenant));
    return {
      vms: Number(h.vms ?? 0),
      memoryMiB: Number(h.mem ?? 0),
      vcpus: Number(h.vcpus ?? 0),
      diskGiB: Number(h.disk ?? 0),
    };
  }
}
