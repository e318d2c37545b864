import { z } from "zod";
import { JobId, VmName } from "./names.js";

/** What a power request does to a domain: `suspend` pauses it (no CPU), `resume` runs it again. */
export const PowerAction = z.enum(["suspend", "resume"]);
export type PowerAction = z.infer<typeof PowerAction>;

/** A request to a host's worker to pause or resume one of the fleet's VMs, sent over Redis pub/sub. */
export const PowerRequest = z.object({
  id: JobId,
  vm: VmName,
  action: PowerAction,
});
export type PowerRequest = z.infer<typeof PowerRequest>;

/** A worker's answer to a power request: the domain's state after the action, or why it failed. */
export const PowerResult = z.object({
  /** libvirt's state (`virsh domstate`) after the action, e.g. `paused`, `running`. */
  state: z.string().optional(),
  /** Whether the guest's clock was set through its agent after a resume (false: no agent). */
  clockSet: z.boolean().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type PowerResult = z.infer<typeof PowerResult>;
