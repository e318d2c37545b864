import { z } from "zod";
import { HostId, ImageName } from "./names.js";
import { CanonicalNetworkEntry } from "./network-allow.js";
import { Labels, VirtType } from "./vm-spec.js";

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
});
export type HostStatus = z.infer<typeof HostStatus>;
