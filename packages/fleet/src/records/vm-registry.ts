import type { Redis } from "ioredis";
import { QuotaLedger } from "../admission/quota.js";
import { CapacityLedger } from "../placement/capacity-ledger.js";
import type { Keys } from "../redis/keys.js";
import { parseRecord, VmRecord, type VmState } from "./records.js";

export { VmRecord, VmState } from "./records.js";

/** A VM record as hash fields; without `hostId` when `withHost` is false. */
export function vmFields(r: VmRecord, withHost = true): string[] {
  return [
    ...(withHost ? ["hostId", r.hostId] : []),
    "name",
    r.name,
    "state",
    r.state,
    "fingerprint",
    r.fingerprint,
    "jobId",
    r.jobId,
    "memoryMiB",
    String(r.memoryMiB),
    "vcpus",
    String(r.vcpus),
    "labels",
    JSON.stringify(r.labels),
    "group",
    r.group ?? "",
    "tenant",
    r.tenant ?? "",
    ...(r.addresses === undefined ? [] : ["addresses", JSON.stringify(r.addresses)]),
    ...(r.createdAt === undefined ? [] : ["createdAt", r.createdAt]),
    "updatedAt",
    r.updatedAt,
  ];
}

/** Where every VM of the fleet lives and what state it is in. */
export class VmRegistry {
  readonly #redis: Redis;
  readonly #keys: Keys;
  readonly ledger: CapacityLedger;
  readonly quotas: QuotaLedger;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
    this.ledger = new CapacityLedger(redis, keys);
    this.quotas = new QuotaLedger(redis, keys);
  }

  /** Records where a claimed VM was placed. */
  async placed(name: string, hostId: string, group: string | undefined): Promise<void> {
    const m = this.#redis.multi().hset(this.#keys.vm(name), { hostId, group: group ?? "" });
    if (group !== undefined) m.hset(this.#keys.group(group), name, hostId);
    await m.exec();
  }

  /** How many VMs of a group each host holds. */
  async groupCounts(group: string): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    for (const host of await this.#redis.hvals(this.#keys.group(group))) counts.set(host, (counts.get(host) ?? 0) + 1);
    return counts;
  }

  /**
   * Forgets a VM: gives its room back, leaves its group, drops its record. With `jobId`, only when the
   * record is that job's (a newer create of the same name is left alone). Safe to call twice.
   */
  async forget(name: string, jobId?: string): Promise<void> {
    const record = await this.get(name);
    if (record === undefined || (jobId !== undefined && record.jobId !== jobId)) return;
    if (record.hostId !== "") await this.ledger.release(record.hostId, name);
    if (record.tenant !== undefined) await this.quotas.release(record.tenant, name);
    if (record.group !== undefined) await this.#redis.hdel(this.#keys.group(record.group), name);
    await this.remove(name);
  }

  /**
   * A VM's record, parsed with the VmRecord schema; undefined when there is none. A record that does
   * not parse throws INTERNAL naming the field at fault.
   */
  async get(name: string): Promise<VmRecord | undefined> {
    const h = await this.#redis.hgetall(this.#keys.vm(name));
    if (h.name === undefined) return undefined;
    return parseRecord(VmRecord, h, `the record of VM ${name}`);
  }

  async setState(name: string, state: VmState, jobId?: string): Promise<void> {
    await this.#redis.hset(this.#keys.vm(name), {
      state,
      updatedAt: new Date().toISOString(),
      ...(jobId === undefined ? {} : { jobId }),
    });
  }

  /** Records a VM found on a host (reconciliation). */
  async put(record: VmRecord): Promise<void> {
    await this.#redis
      .multi()
      .del(this.#keys.vm(record.name))
      .hset(this.#keys.vm(record.name), ...vmFields(record))
      .sadd(this.#keys.vms(), record.name)
      .exec();
  }

  async remove(name: string): Promise<void> {
    await this.#redis.multi().del(this.#keys.vm(name)).srem(this.#keys.vms(), name).exec();
  }

  /** Every VM's record, by name. A record that does not parse (see get) is left out: one bad record never hides the rest. */
  async list(): Promise<VmRecord[]> {
    const names = (await this.#redis.smembers(this.#keys.vms())).sort();
    const records = await Promise.all(names.map((n) => this.get(n).catch(() => undefined)));
    return records.filter((r): r is VmRecord => r !== undefined);
  }
}
