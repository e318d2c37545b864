import { z } from "zod";
import { HostId, ImageName, JobId } from "./names.js";
import { CanonicalNetworkEntry } from "./network-allow.js";
import { Labels, VirtType } from "./vm-spec.js";

/**
 * Something virtfleet may have made on a host that nothing proves is dead: a domain (its metadata
 * names this host) or a VM folder in the storage directory. Reported, never removed on its own.
 */
export const HostOrphan = z.object({
  vm: z.string().max(256),
  kind: z.enum(["domain", "folder"]),
  reason: z.string().max(1000),
});
export type HostOrphan = z.infer<typeof HostOrphan>;

/** At most this many orphans travel in a host's status (the count is always right in the log). */
export const MAX_REPORTED_ORPHANS = 500;

/** What a worker publishes about its host on every heartbeat. */
export const HostStatus = z.object({
  hostId: HostId,
  version: z.string(),
  startedAt: z.string(),
  heartbeatAt: z.string(),
  libvirtUri: z.string(),
  virtTypes: z.array(VirtType),
  defaultVirtType: VirtType,
  concurrency: z.number().int(),
  /** `capacity`: the room offered to VMs (total × overcommit ratio, or as configured). */
  memoryMiB: z.object({ total: z.number(), capacity: z.number() }),
  vcpus: z.object({ total: z.number(), capacity: z.number() }),
  diskFreeGiB: z.number(),
  runningVms: z.number().int(),
  images: z.array(ImageName),
  labels: Labels,
  draining: z.boolean(),
  /**
   * The networks this host offers to VMs (`VIRTFLEET_ALLOWED_NETWORKS`), as `bridge=NAME` /
   * `network=NAME`. Absent: any network; empty: none (only VMs without a NIC).
   */
  networks: z.array(CanonicalNetworkEntry).optional(),
  /** What the last reconciliation found and left alone (see HostOrphan). */
  orphans: z.array(HostOrphan).max(MAX_REPORTED_ORPHANS).default([]),
});
export type HostStatus = z.infer<typeof HostStatus>;

/** An operator's request to a host's worker (`virtfleet hosts reconcile`), sent over Redis pub/sub. */
export const ReconcileRequest = z.object({
  id: JobId,
  /** Also remove the orphans found (only what virtfleet's metadata or marker names as this host's). */
  deleteOrphans: z.boolean(),
});
export type ReconcileRequest = z.infer<typeof ReconcileRequest>;

/** What a worker did with a reconcile request. */
export const ReconcileResult = z.object({
  hostId: HostId,
  /** Removed: proven dead (their job failed or was cancelled), or orphans when asked to. */
  removed: z.array(HostOrphan),
  /** Found and left alone. */
  orphans: z.array(HostOrphan),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type ReconcileResult = z.infer<typeof ReconcileResult>;

/** What virtfleet writes into each VM folder it makes (`.virtfleet.json`): which fleet, host and job, for which VM. */
export const VmMarker = z.object({
  fleet: z.string().min(1).max(128),
  host: HostId,
  job: JobId,
  vm: z.string().min(1).max(256),
});
export type VmMarker = z.infer<typeof VmMarker>;
