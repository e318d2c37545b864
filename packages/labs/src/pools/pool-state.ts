import type { PoolView } from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { LabKeys } from "../keys.js";
import { autoscaleTarget } from "./autoscale.js";
import { type PoolVmRecord, parsePoolVm, type StoredPool } from "./pool-records.js";

/** A pool's VMs as they are now, and what it aims for. */
export interface PoolState {
  pool: StoredPool;
  /** The template's current version (0 when the template is gone). */
  templateVersion: number;
  /** Ready VMs, oldest first. */
  ready: PoolVmRecord[];
  /** Ready VMs due for replacement (older than maxReadyAge, or of an older template version). */
  stale: PoolVmRecord[];
  /** vm → create job id (or `pending:<ms>`). */
  starting: Map<string, string>;
  /** vm → lease id. */
  claimed: Map<string, string>;
  /** Ready VMs aimed for. */
  target: number;
}

export function isStale(vm: PoolVmRecord, pool: StoredPool, templateVersion: number, now: number): boolean {
  return vm.templateVersion < templateVersion || now - vm.readyAt > pool.maxReadyAgeMs;
}

/** Reads a pool's VMs (a few reads; not atomic, which is fine for planning and views). */
export async function readPoolState(
  redis: Redis,
  keys: LabKeys,
  pool: StoredPool,
  now = Date.now(),
): Promise<PoolState> {
  const name = pool.name;
  const [versionRaw, readyNames, starting, claimed, claimTimes, makeTimes] = await Promise.all([
    redis.hget(keys.template(pool.template), "version"),
    redis.zrange(keys.poolReady(name), 0, -1),
    redis.hgetall(keys.poolStarting(name)),
    redis.hgetall(keys.poolClaimed(name)),
    pool.targetReady === "auto" ? redis.zrange(keys.poolClaims(name), 0, -1, "WITHSCORES") : Promise.resolve([]),
    pool.targetReady === "auto" ? redis.lrange(keys.poolMakeTimes(name), 0, -1) : Promise.resolve([]),
  ]);
  const templateVersion = Number(versionRaw ?? 0);
  const records = await Promise.all(readyNames.map((vm) => redis.hgetall(keys.poolVm(name, vm))));
  const ready = records.map(parsePoolVm).filter((r): r is PoolVmRecord => r !== undefined);
  const stale = ready.filter((r) => isStale(r, pool, templateVersion, now));
  const target =
    pool.targetReady === "auto"
      ? autoscaleTarget({
          minReady: pool.minReady,
          max: pool.max,
          claimTimes: claimTimes.filter((_, i) => i % 2 === 1).map(Number),
          makeDurationsMs: makeTimes.map(Number),
          now,
        })
      : pool.minReady;
  return {
    pool,
    templateVersion,
    ready,
    stale,
    starting: new Map(Object.entries(starting)),
    claimed: new Map(Object.entries(claimed)),
    target,
  };
}

/** Every VM the pool holds (starting, ready and claimed). */
export function totalVms(s: PoolState): number {
  return s.starting.size + s.ready.length + s.claimed.size;
}

/** Why the pool has fewer fresh ready VMs than it aims for (undefined when it does not). */
export function belowReason(s: PoolState): string | undefined {
  const fresh = s.ready.length - s.stale.length;
  if (fresh >= s.target) return undefined;
  const why: string[] = [];
  if (s.templateVersion === 0) why.push(`template "${s.pool.template}" is missing`);
  if (s.starting.size > 0) why.push(`${s.starting.size} starting`);
  if (totalVms(s) >= s.pool.max) why.push(`at max (${s.pool.max} VMs)`);
  if (s.pool.lastError !== undefined) why.push(`last create failed: ${s.pool.lastError}`);
  if (s.stale.length > 0) why.push(`${s.stale.length} stale being replaced`);
  if (why.length === 0) why.push("refilling");
  return why.join(", ");
}

export function toPoolView(s: PoolState): PoolView {
  const { quota: _quota, lastError: _lastError, ...config } = s.pool;
  const below = belowReason(s);
  return {
    ...config,
    templateVersion: s.templateVersion,
    ready: s.ready.length,
    starting: s.starting.size,
    claimed: s.claimed.size,
    stale: s.stale.length,
    target: s.target,
    ...(below === undefined ? {} : { below }),
  };
}
