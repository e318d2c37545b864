import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";
import { loadLua } from "../redis/lua.js";
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

/** `quota_check` and `quota_take` (admission/includes/quota.lua: its header gives the contract). */
export const QUOTA_LUA = loadLua(new URL("./includes/quota.lua", import.meta.url));

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
