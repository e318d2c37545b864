import { z } from "zod";
import { ErrorInfo } from "./errors.js";
import { HostId, JobId, VmName } from "./names.js";

export const CreatePhase = z.enum([
  "queued",
  "placed",
  "image.pulling",
  "disk.creating",
  "disk.ready",
  "cloudinit.seeded",
  "domain.defining",
  "domain.running",
  "guest.ready",
]);
export const DestroyPhase = z.enum(["queued", "placed", "stopping", "domain.undefined", "storage.removed"]);
export const TerminalPhase = z.enum(["done", "failed", "cancelled"]);
export type TerminalPhase = z.infer<typeof TerminalPhase>;

export const Phase = z.enum([
  ...CreatePhase.options,
  "stopping",
  "domain.undefined",
  "storage.removed",
  ...TerminalPhase.options,
]);
export type Phase = z.infer<typeof Phase>;

export function isTerminal(phase: Phase): phase is TerminalPhase {
  return phase === "done" || phase === "failed" || phase === "cancelled";
}

/** The percentage each phase stands for, so every reporter agrees. */
export const PHASE_PERCENT: Readonly<Record<Phase, number>> = {
  queued: 0,
  placed: 5,
  "image.pulling": 7,
  "disk.creating": 10,
  "disk.ready": 30,
  "cloudinit.seeded": 35,
  "domain.defining": 40,
  "domain.running": 80,
  "guest.ready": 95,
  stopping: 20,
  "domain.undefined": 60,
  "storage.removed": 90,
  done: 100,
  failed: 100,
  cancelled: 100,
};

export const JobKind = z.enum(["create", "destroy"]);
export type JobKind = z.infer<typeof JobKind>;

/** One progress event, as stored in Redis and streamed to callers. */
export const ProgressEvent = z.object({
  jobId: JobId,
  kind: JobKind,
  vm: VmName,
  /** (Events stored before the rename say `undefined` for `domain.undefined`.) */
  phase: z.preprocess((p) => (p === "undefined" ? "domain.undefined" : p), Phase),
  percent: z.number().min(0).max(100),
  message: z.string(),
  host: HostId.optional(),
  at: z.string(),
  error: ErrorInfo.optional(),
  /** The guest's addresses as its agent (or DHCP) reported them; on `guest.ready` when known. */
  addresses: z.array(z.string()).optional(),
});
export type ProgressEvent = z.infer<typeof ProgressEvent>;

/** An event with its position in the job's stream (a Redis stream id), for resuming. */
export interface StreamedEvent extends ProgressEvent {
  id: string;
}
