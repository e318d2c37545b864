import { VirtfleetError } from "@virtfleet/core";
import type { LabsDeps } from "../deps.js";

/** How long the lock of a VM's destroy request is held at most (a holder that died lets go then). */
const DESTROY_LOCK_MS = 30_000;

/**
 * Destroys a pool VM wherever it is in its life: one being made has its create cancelled (the worker
 * rolls back what it made; one that finished meanwhile is destroyed), one already being destroyed or
 * unknown to the fleet is left alone. Returns the destroy job, if one was enqueued. Safe to call
 * twice, and at once from several places (`pool rm` and the manager's orphan sweep): the caller that
 * takes the VM's lock looks again and asks for the one destroy; the others ask nothing.
 */
export async function destroyPoolVm(
  deps: Pick<LabsDeps, "fleet" | "logger" | "redis" | "keys">,
  vm: string,
): Promise<string | undefined> {
  const record = await deps.fleet.vms.get(vm);
  if (record === undefined || record.state === "destroying") return undefined;
  if (record.state === "creating") {
    const outcome = await deps.fleet.cancelJob(record.jobId).catch(() => undefined);
    if (outcome !== "done") return undefined;
  }
  const lock = deps.keys.poolVmDestroying(vm);
  if ((await deps.redis.set(lock, "1", "PX", DESTROY_LOCK_MS, "NX")) === null) return undefined;
  try {
    // Under the lock: a destroy asked for since the first look has marked the VM destroying.
    const now = await deps.fleet.vms.get(vm);
    if (now === undefined || now.state === "destroying") return undefined;
    const job = await deps.fleet.destroyVm(vm);
    deps.logger.info({ vm, jobId: job.id }, "pool VM destroyed");
    return job.id;
  } catch (error) {
    if (error instanceof VirtfleetError && error.code === "VM_NOT_FOUND") return undefined;
    throw error;
  } finally {
    await deps.redis.del(lock);
  }
}
