import type { ControllerLoop, LabsDeps } from "../deps.js";
import { LabService } from "../labs/lab-service.js";
import { LabWatcher } from "../labs/lab-watcher.js";
import type { LeaseHandlers } from "../leases/release-lease.js";
import { PoolManager, type PoolManagerOptions } from "../pools/pool-manager.js";
import { PoolService } from "../pools/pool-service.js";
import { Reaper, type ReaperOptions } from "../reaper/reaper.js";

/**
 * What each kind of lease's expiry or release does: `claim` → the pool's handler (destroys the
 * claimed VM, refills), `lab` → the lab's (takes the lab down). The one place they are chosen, for
 * the reaper and for `releaseLease` (API, CLI).
 */
export function buildLeaseHandlers(deps: LabsDeps, services: LabServices = labServices(deps)): LeaseHandlers {
  const handlers: LeaseHandlers = {};
  handlers.claim = services.pools.leaseHandler;
  handlers.lab = services.labs.leaseHandler;
  return handlers;
}

/** The services whose loops and lease handlers the controller runs, made once. */
export interface LabServices {
  labs: LabService;
  pools: PoolService;
}

export function labServices(deps: LabsDeps): LabServices {
  return { labs: new LabService(deps), pools: new PoolService(deps) };
}

/** Tuning of the loops (tests shorten them); defaults are each loop's own. */
export interface ControllerLoopsOptions {
  reaper?: Omit<ReaperOptions, "deps" | "handlers">;
  pools?: PoolManagerOptions;
}

/** Every loop the elected controller runs, in one place (the worker and virtfleet-controller call this). */
export function buildControllerLoops(deps: LabsDeps, options: ControllerLoopsOptions = {}): ControllerLoop[] {
  const services = labServices(deps);
  const handlers = buildLeaseHandlers(deps, services);
  const loops: ControllerLoop[] = [new Reaper({ deps, handlers, ...options.reaper }), new LabWatcher(services.labs)];
  loops.push(new PoolManager(deps, options.pools));
  return loops;
}
