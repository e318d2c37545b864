import { PHASE_PERCENT } from "@virtfleet/core";
import type { Redis } from "ioredis";
import { ROOM_LUA } from "../placement/capacity-ledger.js";
import { APPEND_LUA, EVENT_LIMITS, type EventInput, toEvent } from "../records/event-log.js";
import { type VmRecord, vmFields } from "../records/vm-registry.js";
import type { Keys } from "../redis/keys.js";
import { BatchedScript } from "../redis/scripts.js";
import type { QuotaLimits, QuotaUsage } from "./quota.js";
import { QUOTA_LUA } from "./quota.js";

// Admits a create in one atomic step: claims the VM's name fleet-wide (a name is free when unknown
// or its last create failed), checks the tenant's quota, picks the best host with room on live
// numbers, and only when all of that holds writes everything: the room and quota claims, the VM's
// record, the job's record and its `queued` and `placed` events, and the job's entry in the pending
// set (taken out once the job is in its host's queue; see PendingJobs). Nothing is written otherwise.
// (The job's payload travels in the host's queue; the record holds what the API shows.)
// A name is one tenant's: the same spec asked again by the VM's own tenant (or, for an operator's
// VM, by an operator) is the same VM; anything else is a clash, and a tenant's clash learns nothing
// of the other VM (the host is given only to an operator).
// KEYS: 1 vm hash, 2 vms set, 3 job hash, 4 group hash, 5 usage hash, 6 usage per-VM hash (4-6:
// any key when unused), 7 pending jobs set, 8 job events stream, 9 all-events stream, 10 batch hash,
// 11 batch events stream (10-11: any key when the job has no batch). The hosts' and streams' keys are built from the prefix
// and their ids (Redis Cluster is not supported: see README).
// ARGV: 1 the request as JSON (see Admission.admit), 2 the `queued` event's JSON, 3.. the `placed`
// event's JSON split around where the host's id goes.
// Returns {'claimed', host} | {'same', jobId, host, pending ('1'/'0')} | {'clash', host or ''} |
// {'quota', which} | {'noroom'}.
const ADMIT = {
  lib: ROOM_LUA + QUOTA_LUA + APPEND_LUA,
  epilogue: "flush_events()",
  body: `
local a = cjson.decode(ARGV[1])
local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'failed' then
  local r = redis.call('HMGET', KEYS[1], 'fingerprint', 'jobId', 'hostId', 'tenant')
  local sameTenant = (r[4] or '') == a.tenant
  if sameTenant and r[1] == a.fingerprint and state ~= 'destroying' then
    local pending = '0'
    if redis.call('ZSCORE', KEYS[7], r[2] or '') then pending = '1' end
    return { 'same', r[2], r[3] or '', pending }
  end
  if a.tenant == '' then return { 'clash', r[3] or '' } end
  return { 'clash', '' }
end
local quota = a.quota
if quota then
  local over = quota_check(KEYS[5], KEYS[6], a.vm, a.mem, a.vcpus, quota.vms, quota.mem, quota.vcpus, a.disk, quota.disk)
  if over ~= 'ok' then return { 'quota', over } end
end
local groupKey = nil
if a.grouped then groupKey = KEYS[4] end
-- The hosts' keys, as Keys names them (alloc, claims, host, drain): a fleet of hundreds of hosts
-- would otherwise send hundreds of keys with every request.
local function hk(i)
  local id = a.hosts[i]
  return a.prefix .. ':alloc:' .. id, a.prefix .. ':claims:' .. id, a.prefix .. ':host:' .. id, a.prefix .. ':drain:' .. id
end
local best = find_room(hk, a.hosts, a.vm, a.mem, a.vcpus, a.policy, groupKey, false, a.disk)
if best == 0 then return { 'noroom' } end
local host = a.hosts[best]
take_room(hk, a.hosts, best, a.vm, a.mem, a.vcpus, groupKey, a.disk)
if quota then quota_take(KEYS[5], KEYS[6], a.vm, a.mem, a.vcpus, a.disk) end
-- A failed create's record goes (with any field this one does not set).
if state then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'hostId', host, unpack(a.vmFields))
redis.call('SADD', KEYS[2], a.vm)
redis.call('HSET', KEYS[3], 'hostId', host, unpack(a.jobFields))
redis.call('ZADD', KEYS[7], a.atMs, a.jobId)
local bhash, bstream = false, false
if a.batch then bhash = KEYS[10]; bstream = KEYS[11] end
local e = { job = KEYS[3], stream = KEYS[8], fleet = KEYS[9], batch_hash = bhash, batch_stream = bstream,
  limits = a.limits, json = ARGV[2], phase = 'queued',
  percent = a.queued.percent, message = a.queued.message, at = a.at, host = '', err = '' }
append_event(e)
local parts = {}
for i = 3, #ARGV do parts[#parts + 1] = ARGV[i] end
e.json = table.concat(parts, host)
e.phase = 'placed'
e.percent = a.placed.percent
e.message = table.concat(a.placed.messageParts, host)
e.host = host
append_event(e)
return { 'claimed', host }
`,
};

export interface AdmitRequest {
  /** The VM's record; its hostId is filled in with the host picked. */
  record: VmRecord;
  /** Hosts to pick from, in order (the pick is by policy on live numbers). Empty: none has room. */
  hosts: readonly string[];
  policy: "spread" | "pack" | "order";
  group?: string | undefined;
  /** The VM's total disk size (GiB), claimed of the host's disk room and the tenant's quota. */
  diskGiB: number;
  tenant?: { name: string; limits: QuotaLimits } | undefined;
  /** The job's record fields besides hostId and phase. */
  job: { jobId: string; kind: "create"; vm: string; tenant?: string; batchId?: string; callbackUrl?: string };
}

export type AdmitOutcome =
  | { outcome: "claimed"; hostId: string }
  /** `pending`: the earlier job is not yet known to be in its host's queue. */
  | { outcome: "same"; jobId: string; hostId: string; pending: boolean }
  /** `hostId`: where the other VM is; given only to an operator (no tenant), else "". */
  | { outcome: "clash"; hostId: string }
  | { outcome: "quota"; which: keyof QuotaUsage }
  | { outcome: "noroom" };

/** Admission of create requests: one script call each (see the script above). */
export class Admission {
  readonly #keys: Keys;
  readonly #script: BatchedScript;

  constructor(redis: Redis, keys: Keys) {
    this.#keys = keys;
    this.#script = new BatchedScript(redis, ADMIT, 100);
  }

  async admit(r: AdmitRequest): Promise<AdmitOutcome> {
    const { jobId, vm } = r.job;
    // Unguessable, so no user text can contain it: where the host's id goes.
    const holder = `{{host:${jobId}}}`;
    const now = new Date();
    const at = now.toISOString();
    const event = (input: Omit<EventInput, "jobId" | "kind" | "vm">) =>
      JSON.stringify(toEvent({ jobId, kind: "create", vm, ...input }, at));
    const placedMessage = `placed on host ${holder}`;
    const k = this.#keys;
    const args = {
      vm,
      fingerprint: r.record.fingerprint,
      mem: r.record.memoryMiB,
      vcpus: r.record.vcpus,
      disk: r.diskGiB,
      tenant: r.tenant?.name ?? "",
      jobId,
      atMs: now.getTime(),
      policy: r.policy,
      grouped: r.group !== undefined,
      ...(r.tenant === undefined
        ? {}
        : {
            quota: {
              vms: r.tenant.limits.vms ?? -1,
              mem: r.tenant.limits.memoryMiB ?? -1,
              vcpus: r.tenant.limits.vcpus ?? -1,
              disk: r.tenant.limits.diskGiB ?? -1,
            },
          }),
      hosts: r.hosts,
      vmFields: vmFields(r.record, false), // the script adds hostId
      jobFields: [
        "jobId",
        jobId,
        "kind",
        "create",
        "vm",
        vm,
        "createdAt",
        at,
        ...(r.job.tenant === undefined ? [] : ["tenant", r.job.tenant]),
        ...(r.job.batchId === undefined ? [] : ["batch", r.job.batchId]),
        ...(r.job.callbackUrl === undefined ? [] : ["callbackUrl", r.job.callbackUrl]),
      ],
      queued: { percent: "0", message: "accepted" },
      placed: { percent: String(PHASE_PERCENT.placed), messageParts: placedMessage.split(holder) },
      at,
      prefix: k.prefix,
      limits: EVENT_LIMITS,
      ...(r.job.batchId === undefined ? {} : { batch: r.job.batchId }),
    };
    const unused = k.vm(vm);
    const reply = (await this.#script.call(
      [
        k.vm(vm),
        k.vms(),
        k.job(jobId),
        r.group === undefined ? unused : k.group(r.group),
        r.tenant === undefined ? unused : k.usage(r.tenant.name),
        r.tenant === undefined ? unused : k.usageVms(r.tenant.name),
        k.pendingJobs(),
        k.jobEvents(jobId),
        k.allEvents(),
        r.job.batchId === undefined ? unused : k.batch(r.job.batchId),
        r.job.batchId === undefined ? unused : k.batchEvents(r.job.batchId),
      ],
      [
        JSON.stringify(args),
        event({ phase: "queued", message: "accepted" }),
        ...event({ phase: "placed", message: placedMessage, host: holder }).split(holder),
      ],
    )) as [string, string?, string?, string?];
    const [outcome, value = "", host = "", pending = "0"] = reply;
    switch (outcome) {
      case "claimed":
        return { outcome, hostId: value };
      case "same":
        return { outcome, jobId: value, hostId: host, pending: pending === "1" };
      case "clash":
        return { outcome, hostId: value };
      case "quota":
        return { outcome, which: value as keyof QuotaUsage };
      default:
        return { outcome: "noroom" };
    }
  }
}
