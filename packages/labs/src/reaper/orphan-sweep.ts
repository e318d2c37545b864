import { LAB_LABEL, POOL_LABEL } from "@virtfleet/core";
import type { LabsDeps } from "../deps.js";

/** VMs younger than this (ms, by their record's last change) are left alone: a pool or lab being made. */
export const DEFAULT_ORPHAN_MIN_AGE_MS = 60_000;

export interface OrphanSweepOptions {
  deps: Pick<LabsDeps, "redis" | "keys" | "fleet" | "logger">;
  /** Default DEFAULT_ORPHAN_MIN_AGE_MS. */
  minAgeMs?: number;
}

/** A VM the sweep destroyed, and why. */
export interface SweptVm {
  vm: string;
  reason: string;
}

/**
 * Destroys pool and lab VMs whose pool or lab no longer exists: a VM of the fleet's registry
 * labelled `virtfleet.pool=P` while P is not in `<prefix>:pools`, or `virtfleet.lab=L` while L is not
 * in `<prefix>:labs`. VMs already being destroyed, failed ones and young ones are skipped.
 */
export class OrphanSweep {
  readonly #d: OrphanSweepOptions["deps"];
  readonly #minAgeMs: number;

  constructor(options: OrphanSweepOptions) {
    this.#d = options.deps;
    this.#minAgeMs = options.minAgeMs ?? DEFAULT_ORPHAN_MIN_AGE_MS;
  }

  async run(now = Date.now()): Promise<SweptVm[]> {
    const { redis, keys, fleet, logger } = this.#d;
    const vms = await fleet.vms.list();
    const [pools, labs] = await Promise.all([redis.smembers(keys.pools()), redis.smembers(keys.labs())]);
    const livePools = new Set(pools);
    const liveLabs = new Set(labs);
    const swept: SweptVm[] = [];
    for (const vm of vms) {
      if (vm.state === "destroying") continue;
      const pool = vm.labels[POOL_LABEL];
      const lab = vm.labels[LAB_LABEL];
      const reason =
        pool !== undefined && !livePools.has(pool)
          ? `pool "${pool}" no longer exists`
          : lab !== undefined && !liveLabs.has(lab)
            ? `lab "${lab}" no longer exists`
            : undefined;
      if (reason === undefined) continue;
      const changed = Date.parse(vm.updatedAt);
      if (Number.isFinite(changed) && now - changed < this.#minAgeMs) continue;
      try {
        await fleet.destroyVm(vm.name);
        swept.push({ vm: vm.name, reason });
        logger.warn({ vm: vm.name, reason }, "orphan sweep: destroying a pool or lab VM nothing holds");
      } catch (error) {
        logger.warn({ vm: vm.name, err: error }, "orphan sweep: could not destroy");
      }
    }
    return swept;
  }
}
