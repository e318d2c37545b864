import { DEFAULT_PREFIX, Keys } from "@virtfleet/fleet";

/**
 * The Redis keys of lab environments, in one place (the `.lua` scripts in `lua/` receive them as
 * KEYS, or build a pool's per-VM key from the prefix they are given: keep them in step).
 */
export class LabKeys {
  readonly prefix: string;
  readonly fleet: Keys;

  constructor(prefix = DEFAULT_PREFIX) {
    this.fleet = new Keys(prefix);
    this.prefix = prefix;
  }

  /** Every template's name. */
  templates(): string {
    return `${this.prefix}:templates`;
  }
  /** A template: name, version, spec (JSON), tenant, createdAt, updatedAt. */
  template(name: string): string {
    return `${this.prefix}:template:${name}`;
  }

  /** Every lease by when it expires (score: ms since the epoch). */
  leases(): string {
    return `${this.prefix}:leases`;
  }
  /** A lease: id, kind, target, pool, tenant, createdAt, expiresAt, maxExpiresAt (ms). */
  lease(id: string): string {
    return `${this.prefix}:lease:${id}`;
  }
  /** Expired leases the reaper has taken but not yet finished (id → ms taken). */
  leasesReaping(): string {
    return `${this.prefix}:leases:reaping`;
  }

  /** Every pool's name. */
  pools(): string {
    return `${this.prefix}:pools`;
  }
  /** A pool's settings (PoolConfig fields, JSON-encoded where not strings). */
  pool(name: string): string {
    return `${this.prefix}:pool:${name}`;
  }
  /** A pool's ready, unclaimed VMs (score: when each became ready, ms). */
  poolReady(name: string): string {
    return `${this.prefix}:pool:${name}:ready`;
  }
  /** A pool's VMs being made (vm → job id). */
  poolStarting(name: string): string {
    return `${this.prefix}:pool:${name}:starting`;
  }
  /** A pool's claimed VMs (vm → lease id). */
  poolClaimed(name: string): string {
    return `${this.prefix}:pool:${name}:claimed`;
  }
  /** One pool VM: vm, host, addresses (JSON), templateVersion, jobId, createdAt, readyAt, leaseId. */
  poolVm(name: string, vm: string): string {
    return `${this.prefix}:pool:${name}:vm:${vm}`;
  }
  /** Recent claims of a pool (score and member: ms), for `targetReady: auto`. */
  poolClaims(name: string): string {
    return `${this.prefix}:pool:${name}:claims`;
  }
  /** How long a pool's recent VMs took from create to ready (a list of ms, newest first), for `targetReady: auto`. */
  poolMakeTimes(name: string): string {
    return `${this.prefix}:pool:${name}:make-times`;
  }
  /** The prefix of a pool's per-VM keys (`poolVm(name, vm)` is this and the VM's name), for scripts. */
  poolVmPrefix(name: string): string {
    return `${this.prefix}:pool:${name}:vm:`;
  }
  /** Held (briefly, with a TTL) by whoever is asking for a pool VM's destroy, so only one asks. */
  poolVmDestroying(vm: string): string {
    return `${this.prefix}:pool-destroying:${vm}`;
  }
  /** Published on when a pool changes (claim, release, ready VM, settings): `<pool>`. */
  poolsChannel(): string {
    return `${this.prefix}:pools:changed`;
  }

  /** Every lab's name. */
  labs(): string {
    return `${this.prefix}:labs`;
  }
  /** A lab: name, state, tenant, labels, createdAt, leaseId, batchId, reason. */
  lab(name: string): string {
    return `${this.prefix}:lab:${name}`;
  }
  /** A lab's VMs: vm → JSON {template, templateVersion, jobId}. */
  labVms(name: string): string {
    return `${this.prefix}:lab:${name}:vms`;
  }
  /** A lab's event stream. */
  labEvents(name: string): string {
    return `${this.prefix}:lab:${name}:events`;
  }

  /** Lab environments' event stream (lease.expired, lease.released, …), capped. */
  events(): string {
    return `${this.prefix}:labs:events`;
  }

  /** Counters of lab environments: `expired:<kind>` (leases the reaper expired), for /metrics. */
  stats(): string {
    return `${this.prefix}:labs:stats`;
  }

  /** Held by the one controller (pool manager and reaper) of the fleet. */
  controllerLock(): string {
    return `${this.prefix}:controller`;
  }
}
