import { z } from "zod";
import { HostId, Token } from "./names.js";
import { LabelKey, LabelValue } from "./vm-spec.js";
export const PlacementPolicy = z.enum(["spread", "pack"]);
export type PlacementPolicy = z.infer<typeof PlacementPolicy>;

/** How a create is placed: all optional; by default, spread over every host with room. */
export const PlacementOptions = z
  .object({
    /** Pin to this host: it gets the VM or the request fails. */
    host: HostId.optional(),
    /** Only hosts carrying every one of these labels. */
    requiredLabels: z.record(LabelKey, LabelValue).default({}),
    /** Anti-affinity: VMs of one group go to different hosts where possible. */
    group: Token.optional(),
    policy: PlacementPolicy.default("spread"),
  })
  .strict();
export type PlacementOptions = z.infer<typeof PlacementOptions>;
