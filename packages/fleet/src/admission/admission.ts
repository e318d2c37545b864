import { PHASE_PERCENT } from "@virtfleet/core";
import type { Redis } from "ioredis";
import { DEFAULT_PLACEMENT_PAGE, withClasses } from "../placement/capacity-ledger.js";
import { type EventInput, LIMIT_ARGS, toEvent } from "../records/event-log.js";
import { type VmRecord, vmFields } from "../records/vm-registry.js";
import type { Keys } from "../redis/keys.js";
import { BatchedScript } from "../redis/scripts.js";
import type { QuotaLimits, QuotaUsage } from "./quota.js";

// The admission script: commands/admit.lua (its header says what it does, its KEYS, ARGV and reply).
const ADMIT = { file: new URL("./commands/admit.lua", import.meta.url), epilogue: "flush_events()" };

export interface AdmitRequest {
  /** The VM's record; its hostId is filled in with the host picked. */
  record: VmRecord;
  /**
   * The candidates: the hosts of these eligibility classes (see hostClass) less `exclude`, walked in
   * their free-room indexes; or, given `hosts`, those hosts in order. The pick is by policy on live numbers.
   */
  classes?: readonly string[];
  exclude?: readonly string[];
  hosts?: readonly string[];
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
  /** Hosts' classes as the script last told (a guess it checks): a pinned create passes its host's at once. */
  readonly #classOf = new Map<string, string>();

  constructor(redis: Redis, keys: Keys) {
    this.#keys = keys;
    // A full batch of admissions goes at once: Redis runs it while the next ones are made ready.
    this.#script = new BatchedScript(redis, ADMIT, 100, true);
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
    const limits = r.tenant?.limits;
    const vmFieldList = vmFields(r.record, false); // the script adds hostId
    const jobFields = [
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
    ];
    const messageParts = placedMessage.split(holder);
    const exclude = r.exclude ?? [];
    const queued = event({ phase: "queued", message: "accepted" });
    const placed = event({ phase: "placed", message: placedMessage, host: holder }).split(holder);
    const unused = k.vm(vm);
    const eligible = [...new Set(r.classes ?? [])];
    const known = (r.hosts ?? []).flatMap((h) => this.#classOf.get(h) ?? []);
    const reply = await withClasses<[string, string?, string?, string?]>(
      [...eligible, ...known],
      (classes) =>
        this.#script.call(
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
            k.placementHosts(),
            k.placementClaims(),
            k.placementAlive(),
            k.placementDrained(),
            ...classes.map((c) => k.placementFree(c)),
          ],
          // One value each, in the order admit.lua's header gives (no JSON for the script to decode).
          [
            vm,
            r.record.fingerprint,
            String(r.record.memoryMiB),
            String(r.record.vcpus),
            String(r.diskGiB),
            r.tenant?.name ?? "",
            jobId,
            String(now.getTime()),
            at,
            r.policy,
            r.group === undefined ? "0" : "1",
            limits === undefined ? "" : String(limits.vms ?? -1),
            String(limits?.memoryMiB ?? -1),
            String(limits?.vcpus ?? -1),
            String(limits?.diskGiB ?? -1),
            String(DEFAULT_PLACEMENT_PAGE),
            "",
            LIMIT_ARGS[0],
            LIMIT_ARGS[1],
            LIMIT_ARGS[2],
            r.job.batchId ?? "",
            String(eligible.length),
            String(classes.length),
            r.hosts === undefined ? "-1" : String(r.hosts.length),
            String(exclude.length),
            String(vmFieldList.length),
            String(jobFields.length),
            String(messageParts.length),
            queued,
            "0",
            "accepted",
            String(PHASE_PERCENT.placed),
            ...classes,
            ...(r.hosts ?? []),
            ...exclude,
            ...vmFieldList,
            ...jobFields,
            ...messageParts,
            ...placed,
          ],
        ),
      (id, host) => {
        if (host !== undefined) this.#classOf.set(host, id);
      },
    );
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
