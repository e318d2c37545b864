import { isTerminal } from "@virtfleet/core";
import type { EventLog } from "./event-log.js";
import type { PendingJobs } from "./pending-jobs.js";
import type { VmRegistry } from "./vm-registry.js";

/** What ending a pending job touches. */
export interface PendingRecords {
  pending: PendingJobs;
  log: EventLog;
  vms: VmRegistry;
}

/**
 * Ends a create job that was admitted but is not in its host's queue: `failed` (INTERNAL), its VM
 * forgotten (room, quota and name given back). Only the caller that takes it out of the pending
 * set does this (the producer whose enqueue failed, or the fleet monitor's sweep). True when it did.
 */
export async function failPending(records: PendingRecords, jobId: string, message: string): Promise<boolean> {
  if (!(await records.pending.take(jobId))) return false;
  const record = await records.log.getJob(jobId);
  if (record === undefined || isTerminal(record.phase)) return false;
  await records.log.append({
    jobId,
    kind: "create",
    vm: record.vm,
    phase: "failed",
    message,
    ...(record.hostId === undefined ? {} : { host: record.hostId }),
    error: { code: "INTERNAL", message },
  });
  await records.vms.forget(record.vm, jobId);
  return true;
}
