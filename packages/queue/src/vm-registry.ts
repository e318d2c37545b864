import type { Redis } from "ioredis";
import type { Keys } from "./keys.js";

export type VmState = "creating" | "running" | "destroying" | "failed";

export interface VmRecord {
  name: string;
  hostId: string;
  state: VmState;
  fingerprint: string;
  jobId: string;
  memoryMiB: number;
  vcpus: number;
  labels: Record<string, string>;
  updatedAt: string;
}

export type ClaimResult =
  | { outcome: "claimed" }
  | { outcome: "same"; record: VmRecord }
  | { outcome: "clash"; record: VmRecord };

// Claims a VM name fleet-wide. A name is free when unknown or its last create failed.
// KEYS: vm hash, vms set. ARGV: record json fields..., fingerprint
const CLAIM = `
local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'failed' then
  local fp = redis.call('HGET', KEYS[1], 'fingerprint')
  if fp == ARGV[2] and state ~= 'destroying' then return 'same' end
  return 'clash'
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(cjson.decode(ARGV[1])))
redis.call('SADD', KEYS[2], ARGV[3])
return 'claimed'
`;

function toFields(r: VmRecord): string[] {
  return [
    "name",
    r.name,
    "hostId",
    r.hostId,
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
    "updatedAt",
    r.updatedAt,
  ];
}

/** Where every VM of the fleet lives and what state it is in. */
export class VmRegistry {
  readonly #redis: Redis;
  readonly #keys: Keys;

  constructor(redis: Redis, keys: Keys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  /** Claims `record.name` for a new create, atomically; tells whether the same VM or another holds it. */
  async claim(record: VmRecord): Promise<ClaimResult> {
    const outcome = (await this.#redis.eval(
      CLAIM,
      2,
      this.#keys.vm(record.name),
      this.#keys.vms(),
      JSON.stringify(toFields(record)),
      record.fingerprint,
      record.name,
    )) as string;
    if (outcome === "claimed") return { outcome: "claimed" };
    const existing = await this.get(record.name);
    if (existing === undefined) return this.claim(record);
    return outcome === "same" ? { outcome: "same", record: existing } : { outcome: "clash", record: existing };
  }

  async get(name: string): Promise<VmRecord | undefined> {
    const h = await this.#redis.hgetall(this.#keys.vm(name));
    if (h.name === undefined) return undefined;
    return {
      name: h.name,
      hostId: h.hostId ?? "",
      state: (h.state ?? "failed") as VmState,
      fingerprint: h.fingerprint ?? "",
      jobId: h.jobId ?? "",
      memoryMiB: Number(h.memoryMiB ?? 0),
      vcpus: Number(h.vcpus ?? 0),
      labels: h.labels === undefined ? {} : (JSON.parse(h.labels) as Record<string, string>),
      updatedAt: h.updatedAt ?? "",
    };
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
      .hset(this.#keys.vm(record.name), ...toFields(record))
      .sadd(this.#keys.vms(), record.name)
      .exec();
  }

  async remove(name: string): Promise<void> {
    await this.#redis.multi().del(this.#keys.vm(name)).srem(this.#keys.vms(), name).exec();
  }

  async list(): Promise<VmRecord[]> {
    const names = (await this.#redis.smembers(this.#keys.vms())).sort();
    const records = await Promise.all(names.map((n) => this.get(n)));
    return records.filter((r): r is VmRecord => r !== undefined);
  }
}
