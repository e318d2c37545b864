import type { ControllerLoop, LabsDeps } from "../deps.js";
import type { LeaseHandlers } from "../leases/release-lease.js";
import { PoolManager, type PoolManagerOptions } from "../pools/pool-manager.js";
import { PoolService } from "../pools/pool-service.js";
import { Reaper, type ReaperOptions } from "../reaper/reaper.js";

/**
 * What each kind of lease's expiry or release does: `claim` → the pool's handler (destroys the
 * claimed VM, refills), `lab` → the lab's (takes the lab down). The one place they are chosen, for
 * the reaper and for `releaseLease` (API, CLI).
 */
export function buildLeaseHandlers(deps: LabsDeps): LeaseHandlers {
  const handlers: LeaseHandlers = {};
  handlers.claim = new PoolService(deps).leaseHandler;
  // At merge: handlers.lab = <the lab service's lease handler>(deps);
  return handlers;
}

/** Tuning of the loops (tests shorten them); defaults are each loop's own. */
export interface ControllerLoopsOptions {
  reaper?: Omit<ReaperOptions, "deps" | "handlers">;
  pools?: PoolManagerOptions;
}

/** Every loop the elected controller runs, in one place (the worker and virtfleet-controller call this). */
export function buildControllerLoops(deps: LabsDeps, options: ControllerLoopsOptions = {}): ControllerLoop[] {
  const handlers = buildLeaseHandlers(deps);
  const loops: ControllerLoop[] = [new Reaper({ deps, handlers, ...options.reaper })];
  loops.push(new PoolManager(deps, options.pools));
  // At merge: loops.push(<lab watcher>(deps));
  return loops;
}
