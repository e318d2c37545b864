import os from "node:os";
import { DEFAULT_IMAGE_CACHE_GB, DEFAULT_OVERCOMMIT_DISK, DEFAULT_SHUTDOWN_TIMEOUT_MS } from "@virtfleet/agent";
import { HostId, Labels, parseNetworkAllowList, toValidationError, ValidationError, VirtType } from "@virtfleet/core";
import { type RedisConfig, RedisEnv, redisConfigFromParsedEnv } from "@virtfleet/fleet";
import { AccountName, DEFAULT_QEMU_USER } from "@virtfleet/hypervisor";
import { ControllerEnv, Flag } from "@virtfleet/labs";
import { z } from "zod";

/** `key=value,key=value` into a record. */
const LabelList = z
  .string()
  .default("")
  .transform((s, ctx) => {
    const out: Record<string, string> = {};
    for (const part of s
      .split(",")
      .map((p) => p.trim())
      .filter((p) => p !== "")) {
      const eq = part.indexOf("=");
      if (eq <= 0) {
        ctx.addIssue({ code: "custom", message: `"${part}" is not key=value` });
        return z.NEVER;
      }
      out[part.slice(0, eq)] = part.slice(eq + 1);
    }
    return out;
  })
  .pipe(Labels);

/** A comma list of `NAME`, `bridge=NAME` or `network=NAME`; unset: undefined (any network); empty: none. */
const NetworkList = z
  .string()
  .optional()
  .transform((s, ctx) => {
    if (s === undefined) return undefined;
    try {
      return parseNetworkAllowList(
        s
          .split(",")
          .map((p) => p.trim())
          .filter((p) => p !== ""),
      );
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      for (const issue of error.issues) ctx.addIssue({ code: "custom", message: issue.message });
      return z.NEVER;
    }
  });

/** The worker's whole configuration, read once at start. */
export const WorkerEnv = z.object({
  /** REDIS_URL, REDIS_USERNAME, REDIS_PASSWORD(_FILE), REDIS_TLS_*_FILE: one schema for every component. */
  ...RedisEnv.shape,
  VIRTFLEET_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/)
    .default("virtfleet"),
  VIRTFLEET_HOST_ID: HostId.default(os.hostname()),
  VIRTFLEET_LIBVIRT_URI: z.string().min(1).default("qemu:///system"),
  VIRTFLEET_STORAGE_DIR: z.string().min(1).default("/var/lib/virtfleet/vms"),
  VIRTFLEET_IMAGE_DIR: z.string().min(1).default("/var/lib/virtfleet/images"),
  VIRTFLEET_VIRT_TYPE: z.enum(["auto", ...VirtType.options]).default("auto"),
  VIRTFLEET_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(4),
  VIRTFLEET_LABELS: LabelList,
  /**
   * The networks this host offers to VMs: `br-lab,network=lab` (a bare name is a bridge). Unset: any;
   * set but empty: none, only VMs with `--network none`.
   */
  VIRTFLEET_ALLOWED_NETWORKS: NetworkList,
  /** The user libvirt runs QEMU as; each VM's files are given to it, images never are. */
  VIRTFLEET_QEMU_USER: AccountName.default(DEFAULT_QEMU_USER),
  /** QEMU's group. Default: the group named like the user, else the user's primary group. */
  VIRTFLEET_QEMU_GROUP: AccountName.optional(),
  /** When set, exactly the room this host offers to VMs (no ratio applied). */
  VIRTFLEET_CAPACITY_MEMORY_MB: z.coerce.number().int().min(0).optional(),
  VIRTFLEET_CAPACITY_VCPUS: z.coerce.number().int().min(0).optional(),
  /** Otherwise the host's memory and CPUs times these ratios. */
  VIRTFLEET_OVERCOMMIT_MEMORY: z.coerce.number().positive().max(100).default(1),
  VIRTFLEET_OVERCOMMIT_CPU: z.coerce.number().positive().max(100).default(4),
  /** The disk room offered to VMs: the storage filesystem's size times this. */
  VIRTFLEET_OVERCOMMIT_DISK: z.coerce.number().positive().max(100).default(DEFAULT_OVERCOMMIT_DISK),
  /**
   * When the image store passes this many GiB, images pulled from the catalogue are evicted, least
   * recently used first (never one a VM's disk is backed by). Unset or 0: no limit.
   */
  VIRTFLEET_IMAGE_CACHE_GB: z.coerce.number().min(0).max(1_000_000).default(DEFAULT_IMAGE_CACHE_GB),
  VIRTFLEET_HEARTBEAT_MS: z.coerce.number().int().min(100).max(60_000).default(5000),
  /** Running jobs get this long to finish on SIGTERM; then they are rolled back and handed back. */
  VIRTFLEET_SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(0).default(DEFAULT_SHUTDOWN_TIMEOUT_MS),
  /** A dead worker's jobs are picked up again after at most this long. */
  VIRTFLEET_LOCK_MS: z.coerce.number().int().min(1000).default(30_000),
  VIRTFLEET_STALLED_INTERVAL_MS: z.coerce.number().int().min(500).default(15_000),
  VIRTFLEET_MAX_STALLED: z.coerce.number().int().min(1).default(10),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  /**
   * Also compete to be the fleet's controller (reaper, pool manager; one of all workers and
   * virtfleet-controllers runs it at a time). `0`: leave it to others.
   */
  VIRTFLEET_CONTROLLER: Flag.default(true),
  ...ControllerEnv.shape,
});
/** The parsed variables, and the Redis configuration built from them (password and TLS files read). */
export type WorkerEnv = z.infer<typeof WorkerEnv> & { redis: RedisConfig };

export function parseWorkerEnv(env: NodeJS.ProcessEnv): WorkerEnv {
  const result = WorkerEnv.safeParse(env);
  if (!result.success) throw toValidationError(result.error);
  return { ...result.data, redis: redisConfigFromParsedEnv(result.data) };
}
