import { z } from "zod";
import { HostId, ImageName } from "./names.js";
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
});
export type HostStatus = z.infer<typeof HostStatus>;
