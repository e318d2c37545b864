import type { Redis } from "ioredis";
import type { Keys } from "../redis/keys.js";
import { LuaCommand, loadLua } from "../redis/lua.js";

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

const release = new LuaCommand(new URL("./commands/release-quota-2.lua", import.meta.url));

/** Tenants' use of their quotas (VM count, memory, vCPUs, disk), admitted and released atomically. */
export class QuotaLedger {
  readonly #redis: Redis;
  readonly #keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  async release(tenant: string, vm: string): Promise<boolean> {
    return (await release.run(this.#redis, [this.#keys.usage(tenant), this.#keys.usageVms(tenant)], [vm])) === 1;
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
