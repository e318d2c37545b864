import type { LabState } from "@virtfleet/core";
import type { LabRecord, LabVmEntry } from "./lab-record.js";

/** What the fleet says of one lab VM: its entry, its create and destroy jobs, its VM record. */
export interface VmObservation {
  name: string;
  entry: LabVmEntry;
  /** The entry as stored (what a compare-and-set compares with). */
  raw?: string;
  create?: { phase: string; hostId?: string | undefined; error?: { code: string; message: string } | undefined };
  destroy?: { phase: string; error?: { code: string; message: string } | undefined };
  /** The fleet's record of the VM, when it has one. */
  record?: { jobId: string; hostId: string; addresses?: string[] | undefined; lab?: string | undefined };
}

const FAILED = new Set(["failed", "cancelled"]);

/** The VM's phase as a lab shows it: its create job's phase, `destroying`, `destroyed`. */
export function vmPhase(o: VmObservation): string {
  if (o.entry.error !== undefined) return "failed";
  if (o.destroy?.phase === "done") return "destroyed";
  if (o.entry.destroyAt !== undefined) return "destroying";
  if (o.entry.jobId === undefined) return "queued";
  if (o.create === undefined) return removed(o) ? "destroyed" : "unknown";
  return o.create.phase;
}

/** Why the VM failed to come up, if it did. */
export function vmFailure(o: VmObservation): { code: string; message: string } | undefined {
  if (o.entry.error !== undefined) return o.entry.error;
  if (o.create !== undefined && FAILED.has(o.create.phase))
    return (
      o.create.error ?? { code: o.create.phase === "cancelled" ? "CANCELLED" : "INTERNAL", message: o.create.phase }
    );
  return undefined;
}

/** Whether nothing of the VM is left: refused, its create failed (rolled back), or destroyed. */
export function removed(o: VmObservation): boolean {
  if (o.entry.error !== undefined) return true;
  if (o.destroy?.phase === "done") return true;
  if (o.entry.jobId === undefined) return false;
  if (o.create !== undefined && FAILED.has(o.create.phase)) return true;
  if (o.create !== undefined && o.create.phase !== "done") return false;
  // Its create job is done (or long forgotten): the VM is gone once the fleet no longer records it.
  return o.record === undefined || o.record.jobId !== o.entry.jobId;
}

/** The end a VM's job reached that the lab's stream announces (`done`, `failed`, `cancelled`, `destroyed`). */
export function vmAnnouncement(o: VmObservation): string | undefined {
  if (o.destroy?.phase === "done") return "destroyed";
  if (o.entry.error !== undefined) return "failed";
  if (o.create !== undefined && ["done", "failed", "cancelled"].includes(o.create.phase)) return o.create.phase;
  return undefined;
}

export interface DerivedState {
  state: LabState;
  reason?: string | undefined;
  rolledBack: boolean;
}

/**
 * A lab's state from its record and its VMs' jobs (so a read between two watcher ticks is already
 * right): `creating` → `ready` when every VM's create is done, `failed` when one failed (reason:
 * the first by name, and its error); a failed lab that rolls back is `rolledBack` once nothing of
 * it is left; `expiring` → `gone` once nothing is left.
 */
export function deriveState(lab: LabRecord, vms: readonly VmObservation[]): DerivedState {
  const allRemoved = vms.every(removed);
  switch (lab.state) {
    case "creating": {
      const failed = [...vms].sort(byName).find((o) => vmFailure(o) !== undefined);
      if (failed !== undefined) {
        const error = vmFailure(failed) as { code: string; message: string };
        return {
          state: "failed",
          reason: `${failed.name}: ${error.code}: ${error.message}`,
          rolledBack: lab.rollbackOnFailure && allRemoved,
        };
      }
      if (vms.length > 0 && vms.every((o) => o.entry.jobId !== undefined && o.create?.phase === "done"))
        return { state: "ready", reason: lab.reason, rolledBack: false };
      return { state: "creating", reason: lab.reason, rolledBack: false };
    }
    case "failed":
      return {
        state: "failed",
        reason: lab.reason,
        rolledBack: lab.rolledBack || (lab.rollbackOnFailure && allRemoved),
      };
    case "expiring":
      return { state: allRemoved ? "gone" : "expiring", reason: lab.reason, rolledBack: false };
    default:
      return { state: lab.state, reason: lab.reason, rolledBack: lab.rolledBack };
  }
}

/** `web-2` before `web-10`. */
export function byName(a: { name: string }, b: { name: string }): number {
  return a.name.localeCompare(b.name, "en", { numeric: true });
}
