import { Labels, LabName, LabState } from "@virtfleet/core";
import { z } from "zod";

/**
 * A lab as stored in its hash (`keys.lab(name)`): one schema, written by LabService (lab-create.lua,
 * lab-transition.lua) and parsed when read back.
 */
export const LabRecord = z.object({
  name: LabName,
  state: LabState,
  tenant: z.string().optional(),
  labels: Labels,
  /** ms since the epoch. */
  createdAt: z.number(),
  leaseId: z.string(),
  /** When the lease ended it (or `up` set it): the lease itself says while it lives. ms. */
  expiresAt: z.number(),
  batchId: z.string().optional(),
  reason: z.string().optional(),
  rollbackOnFailure: z.boolean(),
  /** A failed lab whose VMs are all removed. */
  rolledBack: z.boolean(),
  /** When it became gone (or failed and rolled back): the record is removed `retentionMs` later. ms. */
  endedAt: z.number().optional(),
});
export type LabRecord = z.infer<typeof LabRecord>;

/** A lab record as hash fields (strings). */
export function labFields(r: LabRecord): Record<string, string> {
  return {
    name: r.name,
    state: r.state,
    tenant: r.tenant ?? "",
    labels: JSON.stringify(r.labels),
    createdAt: String(r.createdAt),
    leaseId: r.leaseId,
    expiresAt: String(r.expiresAt),
    batchId: r.batchId ?? "",
    reason: r.reason ?? "",
    rollbackOnFailure: r.rollbackOnFailure ? "1" : "0",
    rolledBack: r.rolledBack ? "1" : "0",
    endedAt: r.endedAt === undefined ? "" : String(r.endedAt),
  };
}

/** A lab's hash as read back, or undefined when there is none (or it does not parse). */
export function parseLabFields(h: Record<string, string>): LabRecord | undefined {
  if (h.name === undefined) return undefined;
  const opt = (v: string | undefined) => (v === undefined || v === "" ? undefined : v);
  let labels: unknown = {};
  try {
    labels = JSON.parse(h.labels ?? "{}");
  } catch {
    labels = {};
  }
  const parsed = LabRecord.safeParse({
    name: h.name,
    state: h.state,
    tenant: opt(h.tenant),
    labels,
    createdAt: Number(h.createdAt ?? 0),
    leaseId: h.leaseId ?? "",
    expiresAt: Number(h.expiresAt ?? 0),
    batchId: opt(h.batchId),
    reason: opt(h.reason),
    rollbackOnFailure: h.rollbackOnFailure !== "0",
    rolledBack: h.rolledBack === "1",
    endedAt: opt(h.endedAt) === undefined ? undefined : Number(h.endedAt),
  });
  return parsed.success ? parsed.data : undefined;
}

/** One VM of a lab (`keys.labVms(name)`: vm → this as JSON). */
export const LabVmEntry = z.object({
  template: z.string(),
  templateVersion: z.number().int(),
  /** Its create job; absent when the create was refused at admission (then `error`). */
  jobId: z.string().optional(),
  /** Why the create was refused at admission. */
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  /** The last job end announced on the lab's stream (`done`, `failed`, `cancelled`, `destroyed`). */
  announced: z.string().optional(),
  /** When its create job was asked to be cancelled (ms). */
  cancelAt: z.number().optional(),
  /** When it was asked to be destroyed (ms), and the destroy job once enqueued. */
  destroyAt: z.number().optional(),
  destroyJobId: z.string().optional(),
});
export type LabVmEntry = z.infer<typeof LabVmEntry>;

export function parseVmEntry(raw: string): LabVmEntry | undefined {
  try {
    const parsed = LabVmEntry.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
