import { VirtfleetError } from "@virtfleet/core";
import type { LabsDeps } from "../deps.js";

/**
 * Destroys a pool VM wherever it is in its life: one being made has its create cancelled (the worker
 * rolls back what it made; one that finished meanwhile is destroyed), one already being destroyed or
 * unknown to the fleet is left alone. Returns the destroy job, if one was enqueued. Safe to call twice.
 */
export async function destroyPoolVm(deps: Pick<LabsDeps, "fleet" | "logger">, vm: string): Promise<string | undefined> {
  const record = await deps.fleet.vms.get(vm);
  if (record === undefined || record.state === "destroying") return undefined;
  if (record.state === "creating") {
    const outcome = await deps.fleet.cancelJob(record.jobId).catch(() => undefined);
    if (outcome !== "done") return undefined;
  }
  try {
    const job = await deps.fleet.destroyVm(vm);
    deps.logger.info({ vm, jobId: job.id }, "pool VM destroyed");
    return job.id;
  } catch (error) {
    if (error instanceof VirtfleetError && error.code === "VM_NOT_FOUND") return undefined;
    throw error;
  }
}
