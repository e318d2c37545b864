import os from "node:os";
import {
  DEFAULT_CONCURRENCY,
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_IMAGE_CACHE_GB,
  DEFAULT_IMAGE_DIR,
  DEFAULT_LIBVIRT_URI,
  DEFAULT_LOCK_MS,
  DEFAULT_MAX_STALLED,
  DEFAULT_OVERCOMMIT_CPU,
  DEFAULT_OVERCOMMIT_DISK,
  DEFAULT_OVERCOMMIT_MEMORY,
  DEFAULT_SHUTDOWN_TIMEOUT_MS,
  DEFAULT_STALLED_INTERVAL_MS,
  DEFAULT_STORAGE_DIR,
  DEFAULT_VIRT_TYPE,
} from "@virtfleet/agent";
import {
  DEFAULT_LOG_LEVEL,
  HostId,
  Labels,
  LogLevel,
  parseNetworkAllowList,
  toValidationError,
  ValidationError,
  VirtType,
} from "@virtfleet/core";
import { KeyPrefix, type RedisConfig, RedisEnv, redisConfigFromParsedEnv } from "@virtfleet/fleet";
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
  VIRTFLEET_PREFIX: KeyPrefix,
  VIRTFLEET_HOST_ID: HostId.default(os.hostname()),
  VIRTFLEET_LIBVIRT_URI: z.string().min(1).default(DEFAULT_LIBVIRT_URI),
  VIRTFLEET_STORAGE_DIR: z.string().min(1).default(DEFAULT_STORAGE_DIR),
  VIRTFLEET_IMAGE_DIR: z.string().min(1).default(DEFAULT_IMAGE_DIR),
  VIRTFLEET_VIRT_TYPE: z.enum([DEFAULT_VIRT_TYPE, ...VirtType.options]).default(DEFAULT_VIRT_TYPE),
  VIRTFLEET_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(DEFAULT_CONCURRENCY),
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
  VIRTFLEET_OVERCOMMIT_MEMORY: z.coerce.number().positive().max(100).default(DEFAULT_OVERCOMMIT_MEMORY),
  VIRTFLEET_OVERCOMMIT_CPU: z.coerce.number().positive().max(100).default(DEFAULT_OVERCOMMIT_CPU),
  /** The disk room offered to VMs: the storage filesystem's size times this. */
  VIRTFLEET_OVERCOMMIT_DISK: z.coerce.number().positive().max(100).default(DEFAULT_OVERCOMMIT_DISK),
  /**
   * When the image store passes this many GiB, images pulled from the catalogue are evicted, least
   * recently used first (never one a VM's disk is backed by). Unset or 0: no limit.
   */
  VIRTFLEET_IMAGE_CACHE_GB: z.coerce.number().min(0).max(1_000_000).default(DEFAULT_IMAGE_CACHE_GB),
  VIRTFLEET_HEARTBEAT_MS: z.coerce.number().int().min(100).max(60_000).default(DEFAULT_HEARTBEAT_MS),
  /** Running jobs get this long to finish on SIGTERM; then they are rolled back and handed back. */
  VIRTFLEET_SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(0).default(DEFAULT_SHUTDOWN_TIMEOUT_MS),
  /** A dead worker's jobs are picked up again after at most this long. */
  VIRTFLEET_LOCK_MS: z.coerce.number().int().min(1000).default(DEFAULT_LOCK_MS),
  VIRTFLEET_STALLED_INTERVAL_MS: z.coerce.number().int().min(500).default(DEFAULT_STALLED_INTERVAL_MS),
  VIRTFLEET_MAX_STALLED: z.coerce.number().int().min(1).default(DEFAULT_MAX_STALLED),
  LOG_LEVEL: LogLevel.default(DEFAULT_LOG_LEVEL),
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
