import { z } from "zod";
import { HostId, JobId, VmName } from "./names.js";
import { PlacementOptions } from "./placement.js";
import { VmSpec } from "./vm-spec.js";

/** Asks the worker to wait until the guest prints a line on its serial console. */
export const GuestReadyOptions = z
  .object({
    /** A substring of the console line that means "ready". */
    pattern: z.string().min(1).max(256).default("VIRTFLEET_READY"),
    timeoutSec: z.number().int().min(1).max(3600).default(120),
  })
  .strict();
export type GuestReadyOptions = z.infer<typeof GuestReadyOptions>;

export const CreateJobData = z
  .object({
    kind: z.literal("create"),
    jobId: JobId,
    hostId: HostId,
    spec: VmSpec,
    guestReady: GuestReadyOptions.optional(),
    /** How it was placed: a host failure re-places it the same way (a pinned one is not moved). */
    placement: PlacementOptions.optional(),
    requestedAt: z.string(),
  })
  .strict();
export type CreateJobData = z.infer<typeof CreateJobData>;

export const DestroyJobData = z
  .object({
    kind: z.literal("destroy"),
    jobId: JobId,
    hostId: HostId,
    name: VmName,
    requestedAt: z.string(),
  })
  .strict();
export type DestroyJobData = z.infer<typeof DestroyJobData>;

/** A job payload as read back from Redis: parsed again, never trusted. */
export const JobData = z.discriminatedUnion("kind", [CreateJobData, DestroyJobData]);
export type JobData = z.infer<typeof JobData>;
