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

/**
 * How the worker decides a guest is ready: `console` (a line on its serial console), `agent` (the
 * qemu-guest-agent answers `guest-ping`), `ip` (the agent reports an IPv4 address, or DHCP leased
 * one), `cloud-init` (the agent runs `cloud-init status` and it says done).
 */
export const ReadyStrategy = z.enum(["console", "agent", "ip", "cloud-init"]);
export type ReadyStrategy = z.infer<typeof ReadyStrategy>;

/** The console line a `console` wait looks for when given none. */
export const DEFAULT_READY_PATTERN = "VIRTFLEET_READY";

/** How long each strategy waits by default (seconds): a cloud guest under TCG needs ~35 s for its agent. */
export const DEFAULT_READY_TIMEOUT_SEC: Readonly<Record<ReadyStrategy, number>> = {
  console: 120,
  agent: 300,
  ip: 300,
  "cloud-init": 600,
};

/**
 * Asks the worker to wait until the guest is ready, by `strategy` (default `console`, as before:
 * `{pattern, timeoutSec}` alone still means "this line on the console"). `timeoutSec` defaults per
 * strategy (DEFAULT_READY_TIMEOUT_SEC); `pattern` is for `console` only.
 */
export const GuestReadyOptions = z
  .object({
    strategy: ReadyStrategy.default("console"),
    /** A substring of the console line that means "ready" (`console` only). */
    pattern: z.string().min(1).max(256).optional(),
    timeoutSec: z.number().int().min(1).max(MAX_GUEST_READY_SEC, `must be at most ${MAX_GUEST_READY_SEC} s`).optional(),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (o.pattern !== undefined && o.strategy !== "console")
      ctx.addIssue({ code: "custom", path: ["pattern"], message: `only with strategy "console", not "${o.strategy}"` });
  })
  .transform((o) => ({
    strategy: o.strategy,
    ...(o.strategy === "console" ? { pattern: o.pattern ?? DEFAULT_READY_PATTERN } : {}),
    timeoutSec: o.timeoutSec ?? DEFAULT_READY_TIMEOUT_SEC[o.strategy],
  }));
export type GuestReadyOptions = z.infer<typeof GuestReadyOptions>;
export type GuestReadyInput = z.input<typeof GuestReadyOptions>;

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
