import type { Phase } from "@virtfleet/core";

/** What virtfleet's metadata (on a domain) or marker (in a VM folder) says made the thing. */
export interface Made {
  hostId: string;
  /** Absent in metadata written before fleets had an identity. */
  fleetId?: string;
  jobId: string;
}

export interface Evidence {
  /** A live job or a VM the fleet places on this host accounts for it. */
  accounted: boolean;
  made: Made;
  thisHost: string;
  thisFleet: string;
  /** The phase the fleet records for the job named in `made` (undefined: the fleet does not know it). */
  jobPhase: Phase | undefined;
}

export type Verdict =
  | { action: "keep" }
  /** Proven dead: made by this fleet for this host, by a job that failed or was cancelled. */
  | { action: "delete"; reason: string }
  /** Not accounted for, but nothing proves it dead: reported, left alone. */
  | { action: "orphan"; reason: string };

/**
 * The rule for anything virtfleet may have made on a host: it is removed only with proof that it is
 * this fleet's, this host's and dead (its job failed or was cancelled). An empty or restored Redis, a
 * wrong database or another prefix proves nothing, so what they do not know is an orphan, not garbage.
 */
export function judge(e: Evidence): Verdict {
  if (e.accounted) return { action: "keep" };
  const { made } = e;
  if (made.hostId !== e.thisHost) return { action: "orphan", reason: `made for host ${made.hostId}` };
  if (made.fleetId === undefined)
    return { action: "orphan", reason: `made by a virtfleet without a fleet id (job ${made.jobId})` };
  if (made.fleetId !== e.thisFleet)
    return { action: "orphan", reason: `made by another fleet (${made.fleetId}), job ${made.jobId}` };
  if (e.jobPhase === undefined) return { action: "orphan", reason: `job ${made.jobId} is not known to this fleet` };
  if (e.jobPhase === "failed" || e.jobPhase === "cancelled")
    return { action: "delete", reason: `job ${made.jobId} ${e.jobPhase}` };
  return {
    action: "orphan",
    reason: `job ${made.jobId} is ${e.jobPhase}, but no job or VM of the fleet accounts for it here`,
  };
}
