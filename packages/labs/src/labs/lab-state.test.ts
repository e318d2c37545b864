import { describe, expect, it } from "vitest";
import type { LabRecord } from "./lab-record.js";
import { deriveState, removed, type VmObservation, vmAnnouncement, vmPhase } from "./lab-state.js";

const lab = (over: Partial<LabRecord> = {}): LabRecord => ({
  name: "lab1",
  state: "creating",
  labels: {},
  createdAt: 0,
  leaseId: "lease-1",
  expiresAt: 0,
  rollbackOnFailure: true,
  rolledBack: false,
  ...over,
});

const vm = (name: string, phase: string | undefined, over: Partial<VmObservation> = {}): VmObservation => ({
  name,
  entry: { template: "t", templateVersion: 1, jobId: `create-${name}` },
  ...(phase === undefined ? {} : { create: { phase, hostId: "h1" } }),
  record: { jobId: `create-${name}`, hostId: "h1" },
  ...over,
});

describe("a lab's state from its VMs' jobs", () => {
  it("creating until every create is done, then ready", () => {
    expect(deriveState(lab(), [vm("a", "done"), vm("b", "domain.running")]).state).toBe("creating");
    expect(deriveState(lab(), [vm("a", "done"), vm("b", "done")]).state).toBe("ready");
    // Before the batch's jobs are known (no job id yet), never ready.
    expect(deriveState(lab(), [{ name: "a", entry: { template: "t", templateVersion: 1 } }]).state).toBe("creating");
    expect(deriveState(lab(), []).state).toBe("creating");
  });

  it("failed as soon as one VM failed, naming the first by name and its error", () => {
    const d = deriveState(lab(), [
      vm("lab1-web-10", "failed", { create: { phase: "failed", error: { code: "COMMAND_FAILED", message: "x" } } }),
      vm("lab1-web-2", "failed", {
        create: { phase: "failed", error: { code: "GUEST_TIMEOUT", message: "no agent" } },
      }),
      vm("lab1-db-1", "done"),
    ]);
    expect(d).toMatchObject({ state: "failed", reason: "lab1-web-2: GUEST_TIMEOUT: no agent", rolledBack: false });
    const refused = deriveState(lab(), [
      { name: "a", entry: { template: "t", templateVersion: 1, error: { code: "QUOTA_EXCEEDED", message: "q" } } },
    ]);
    expect(refused).toMatchObject({ state: "failed", reason: "a: QUOTA_EXCEEDED: q", rolledBack: true });
  });

  it("a failed lab is rolled back once nothing of it is left (unless it keeps what came up)", () => {
    const failed = lab({ state: "failed", reason: "r" });
    const up = vm("a", "done");
    const gone = vm("a", "done", { record: undefined });
    expect(deriveState(failed, [up]).rolledBack).toBe(false);
    expect(deriveState(failed, [gone]).rolledBack).toBe(true);
    expect(deriveState(lab({ state: "failed", rollbackOnFailure: false }), [gone]).rolledBack).toBe(false);
  });

  it("expiring until every VM is removed, then gone", () => {
    const expiring = lab({ state: "expiring" });
    const destroying = vm("a", "done", {
      entry: { template: "t", templateVersion: 1, jobId: "create-a", destroyAt: 1, destroyJobId: "d" },
      destroy: { phase: "stopping" },
    });
    expect(deriveState(expiring, [destroying]).state).toBe("expiring");
    expect(vmPhase(destroying)).toBe("destroying");
    const destroyed = { ...destroying, destroy: { phase: "done" } };
    expect(deriveState(expiring, [destroyed, vm("b", "cancelled")]).state).toBe("gone");
    expect(vmPhase(destroyed)).toBe("destroyed");
    // A create still running is not removed; one whose VM record belongs to a newer job is.
    expect(removed(vm("c", "disk.creating"))).toBe(false);
    expect(removed(vm("c", "done", { record: { jobId: "create-other", hostId: "h1" } }))).toBe(true);
  });

  it("announces each job end once: done, failed, cancelled, destroyed", () => {
    expect(vmAnnouncement(vm("a", "domain.running"))).toBeUndefined();
    expect(vmAnnouncement(vm("a", "done"))).toBe("done");
    expect(vmAnnouncement(vm("a", "cancelled"))).toBe("cancelled");
    expect(vmAnnouncement(vm("a", "done", { destroy: { phase: "done" } }))).toBe("destroyed");
  });
});
