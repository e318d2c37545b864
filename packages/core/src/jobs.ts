import { z } from "zod";
import { HostId, JobId, VmName } from "./names.js";
import { PlacementOptions } from "./placement.js";
import { VmSpec } from "./vm-spec.js";

/** The longest a worker slot may wait for a guest's ready line. */
export const MAX_GUEST_READY_SEC = 1800;
/** The longest a create may wait for room before NO_CAPACITY. */
export const MAX_WAIT_FOR_CAPACITY_SEC = 600;

/** A producer's `waitForCapacityMs`: at most MAX_WAIT_FOR_CAPACITY_SEC. */
export const WaitForCapacityMs = z
  .number()
  .int()
  .min(0)
  .max(MAX_WAIT_FOR_CAPACITY_SEC * 1000, `must be at most ${MAX_WAIT_FOR_CAPACITY_SEC * 1000} ms`)
  .optional();

/** Asks the worker to wait until the guest prints a line on its serial console. */
export const GuestReadyOptions = z
  .object({
    /** A substring of the console line that means "ready". */
    pattern: z.string().min(1).max(256).default("VIRTFLEET_READY"),
    timeoutSec: z
      .number()
      .int()
      .min(1)
      .max(MAX_GUEST_READY_SEC, `must be at most ${MAX_GUEST_READY_SEC} s`)
      .default(120),
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
