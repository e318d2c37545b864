import type { Redis } from "ioredis";
import type { Keys } from "./keys.js";
import { runScript } from "./scripts.js";

export interface QuotaLimits {
  vms?: number | undefined;
  memoryMiB?: number | undefined;
  vcpus?: number | undefined;
}

export interface QuotaUsage {
  vms: number;
  memoryMiB: number;
  vcpus: number;
}

// Admits a VM against its tenant's quota, atomically; a VM already admitted is not counted twice.
// KEYS: usage hash (vms, mem, vcpus), per-VM hash. ARGV: vm, mem, vcpus, limit vms, mem, vcpus (-1: none).
const ADMIT = `
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 'ok' end
local vms = tonumber(redis.call('HGET', KEYS[1], 'vms') or '0')
local mem = tonumber(redis.call('HGET', KEYS[1], 'mem') or '0')
local vcpus = tonumber(redis.call('HGET', KEYS[1], 'vcpus') or '0')
local lv, lm, lc = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if lv >= 0 and vms + 1 > lv then return 'vms' end
if lm >= 0 and mem + tonumber(ARGV[2]) > lm then return 'memoryMiB' end
if lc >= 0 and vcpus + tonumber(ARGV[3]) > lc then return 'vcpus' end
redis.call('HINCRBY', KEYS[1], 'vms', 1)
redis.call('HINCRBY', KEYS[1], 'mem', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'vcpus', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
return 'ok'
`;

const RELEASE = `
local c = redis.call('HGET', KEYS[2], ARGV[1])
if not c then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local sep = string.find(c, ':')
redis.call('HINCRBY', KEYS[1], 'vms', -1)
redis.call('HINCRBY', KEYS[1], 'mem', -tonumber(string.sub(c, 1, sep - 1)))
redis.call('HINCRBY', KEYS[1], 'vcpus', -tonumber(string.sub(c, sep + 1)))
return 1
`;

/** Tenants' use of their quotas (VM count, memory, vCPUs), admitted and released atomically. */
export class QuotaLedger {
  readonly #redis: Redis;
  readonly #keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /** Admits the VM, or returns the quota it would exceed. */
  async admit(
    tenant: string,
    vm: string,
    memoryMiB: number,
    vcpus: number,
    limits: QuotaLimits,
  ): Promise<"ok" | keyof QuotaUsage> {
    const u = this.#keys.usage(tenant);
    return (await runScript(
      this.#redis,
      ADMIT,
      2,
      u,
      `${u}:vms`,
      vm,
      String(memoryMiB),
      String(vcpus),
      String(limits.vms ?? -1),
      String(limits.memoryMiB ?? -1),
      String(limits.vcpus ?? -1),
    )) as "ok" | keyof QuotaUsage;
  }

  async release(tenant: string, vm: string): Promise<boolean> {
    const u = this.#keys.usage(tenant);
    return (await runScript(this.#redis, RELEASE, 2, u, `${u}:vms`, vm)) === 1;
  }

  async usage(tenant: string): Promise<QuotaUsage> {
    const h = await this.#redis.hgetall(this.#keys.usage(tenant));
    return { vms: Number(h.vms ?? 0), memoryMiB: Number(h.mem ?? 0), vcpus: Number(h.vcpus ?? 0) };
  }
}
