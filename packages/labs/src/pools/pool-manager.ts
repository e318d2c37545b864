import { POOL_LABEL, type TemplateView, toErrorInfo } from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { ControllerLoop, LabsDeps } from "../deps.js";
import { LuaScript } from "../lua.js";
import { AUTOSCALE_MAKE_SAMPLES } from "./autoscale.js";
import { destroyPoolVm } from "./pool-destroy.js";
import { pendingEntry, poolVmFields, readPool, type StoredPool } from "./pool-records.js";
import { poolVmSuffix } from "./pool-service.js";
import { type PoolState, readPoolState, totalVms } from "./pool-state.js";

const readyScript = new LuaScript("pool-ready", 4);
const retireScript = new LuaScript("pool-retire", 2);
const startScript = new LuaScript("pool-start", 3);
const startedScript = new LuaScript("pool-started", 1);
const noteScript = new LuaScript("pool-note", 1);

/** How often the pool manager looks at every pool (it also runs at once on every pool change). */
export const DEFAULT_POOL_TICK_MS = 1000;
/** A starting VM whose create was asked for but never recorded (the manager died) is dropped after this. */
const PENDING_GRACE_MS = 30_000;
/** How long suspending a VM that became ready may take. */
const SUSPEND_TIMEOUT_MS = 30_000;

export interface PoolManagerOptions {
  /** Default DEFAULT_POOL_TICK_MS. */
  intervalMs?: number;
}

/**
 * Keeps every pool filled (a ControllerLoop: the elected controller runs it). Per pool it follows
 * the VMs being made (done: paused if the pool says so, then ready; failed: forgotten, the error
 * kept for `pool ls`), makes new ones until ready + starting reaches the target (never more than
 * `max` in all, never more than `refillConcurrency` at a time), and replaces stale ready VMs (older
 * than maxReadyAge, or of an older template version); it never touches claimed ones. It also
 * destroys VMs labelled with a pool that no longer has them (a pool removed, a crash mid-way).
 */
export class PoolManager implements ControllerLoop {
  readonly name = "pools";
  readonly intervalMs: number;
  readonly #deps: LabsDeps;
  #sub: Redis | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  /** When the controller last called tick: a pool change wakes the manager only while it is elected. */
  #lastCalled = 0;
  #closed = false;

  constructor(deps: LabsDeps, options: PoolManagerOptions = {}) {
    this.#deps = deps;
    this.intervalMs = options.intervalMs ?? DEFAULT_POOL_TICK_MS;
  }

  tick(): Promise<void> {
    this.#lastCalled = Date.now();
    this.#subscribe();
    return this.#kick();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#sub?.disconnect();
    this.#sub = undefined;
    await this.#running?.catch(() => undefined);
  }

  /** Refill as soon as a claim happens: every pool change published wakes the manager (while elected). */
  #subscribe(): void {
    if (this.#sub !== undefined || this.#closed) return;
    const sub = this.#deps.redis.duplicate({ enableAutoPipelining: false });
    sub.on("error", () => undefined);
    sub.on("message", () => {
      // Only while elected: the controller calls tick every interval; a lost lock stops that well
      // before another instance is elected (the lock outlives this window).
      if (Date.now() - this.#lastCalled < 2 * this.intervalMs + 500) void this.#kick().catch(() => undefined);
    });
    void sub.subscribe(this.#deps.keys.poolsChannel()).catch(() => undefined);
    this.#sub = sub;
  }

  /** Runs one pass, or (when one is running) one more after it. */
  #kick(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#running !== undefined) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        await this.#pass();
      } while (this.#again && !this.#closed);
    })().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #pass(): Promise<void> {
    const { redis, keys, logger } = this.#deps;
    const names = await redis.smembers(keys.pools());
    for (const name of names) {
      const pool = await readPool(redis, keys, name);
      if (pool === undefined) continue;
      try {
        await this.#tickPool(pool);
      } catch (error) {
        logger.warn({ pool: name, err: error }, "pool manager: pass failed");
      }
    }
    try {
      await this.#sweepOrphans();
    } catch (error) {
      logger.warn({ err: error }, "pool manager: orphan sweep failed");
    }
  }

  async #tickPool(pool: StoredPool): Promise<void> {
    const { redis, keys } = this.#deps;
    const now = Date.now();
    let state = await readPoolState(redis, keys, pool, now);
    for (const [vm, entry] of state.starting) await this.#follow(pool, vm, entry, now);
    // A `pool rm` meanwhile: nothing more to do for it (the sweep destroys what carries its label).
    const current = await readPool(redis, keys, pool.name);
    if (current === undefined) return;
    state = await readPoolState(redis, keys, current);
    await this.#refill(state);
  }

  /** Follows one VM being made. */
  async #follow(pool: StoredPool, vm: string, entry: string, now: number): Promise<void> {
    const { redis, keys, fleet, logger } = this.#deps;
    let jobId = entry;
    if (entry.startsWith("pending:")) {
      // The create was asked for, but its job id never recorded (the manager died): adopt the job.
      const record = await fleet.vms.get(vm);
      if (record !== undefined && record.jobId !== "") {
        jobId = record.jobId;
        if (Number(await startedScript.run(redis, [keys.poolStarting(pool.name)], [vm, jobId])) === 0) return;
      } else {
        if (now - Number(entry.slice("pending:".length)) > PENDING_GRACE_MS) await this.#dropStarting(pool, vm);
        return;
      }
    }
    const job = await fleet.log.getJob(jobId);
    if (job === undefined) {
      await this.#dropStarting(pool, vm);
      await destroyPoolVm(this.#deps, vm);
      return;
    }
    if (job.phase === "failed" || job.phase === "cancelled") {
      const error = job.error ?? { code: "INTERNAL", message: job.message };
      await this.#note(pool.name, `${error.code} ${error.message}`);
      await this.#dropStarting(pool, vm);
      logger.warn({ pool: pool.name, vm, jobId, code: error.code }, "pool VM failed to start");
      return;
    }
    if (job.phase !== "done") return;
    const record = await fleet.vms.get(vm);
    const host = record?.hostId || job.hostId || "";
    if (pool.idle === "pause") {
      try {
        await this.#deps.power.power(host, vm, "suspend", SUSPEND_TIMEOUT_MS);
      } catch (error) {
        const info = toErrorInfo(error);
        await this.#note(pool.name, `${info.code} suspend failed: ${info.message}`);
        await this.#dropStarting(pool, vm);
        await destroyPoolVm(this.#deps, vm);
        return;
      }
    }
    const early = await redis.hmget(keys.poolVm(pool.name, vm), "templateVersion", "createdAt");
    const createdAt = Number(early[1] ?? Date.parse(job.createdAt)) || now;
    const readyAt = Date.now();
    const moved = await readyScript.run(
      redis,
      [
        keys.poolStarting(pool.name),
        keys.poolReady(pool.name),
        keys.poolVm(pool.name, vm),
        keys.poolMakeTimes(pool.name),
      ],
      [
        vm,
        readyAt,
        Math.max(0, readyAt - createdAt),
        AUTOSCALE_MAKE_SAMPLES,
        keys.poolsChannel(),
        pool.name,
        ...poolVmFields({
          vm,
          host,
          addresses: record?.addresses ?? [],
          templateVersion: Number(early[0] ?? 0),
          jobId,
          createdAt,
        }),
      ],
    );
    if (Number(moved) === 0) {
      // The pool was removed (or the VM taken) meanwhile.
      await destroyPoolVm(this.#deps, vm);
      return;
    }
    await redis.hdel(keys.pool(pool.name), "lastError");
    logger.info({ pool: pool.name, vm, host }, "pool VM ready");
  }

  /** Keeps the pool's last error for `pool ls` (unless the pool was removed meanwhile). */
  async #note(pool: string, lastError: string): Promise<void> {
    await noteScript.run(this.#deps.redis, [this.#deps.keys.pool(pool)], ["lastError", lastError]);
  }

  async #dropStarting(pool: StoredPool, vm: string): Promise<void> {
    const { redis, keys } = this.#deps;
    await redis.multi().hdel(keys.poolStarting(pool.name), vm).del(keys.poolVm(pool.name, vm)).exec();
  }

  /** Replaces stale VMs and makes new ones up to the target, within max and refillConcurrency. */
  async #refill(s: PoolState): Promise<void> {
    const { redis, keys, templates, logger } = this.#deps;
    const pool = s.pool;
    const fresh = s.ready.length - s.stale.length;
    const template = s.templateVersion === 0 ? undefined : await templates.get(pool.template);
    let total = totalVms(s);
    const needNew = Math.max(0, s.target - fresh - s.starting.size);
    // Stale VMs stay claimable until there is room to replace them, or no need to keep them.
    let retire = 0;
    if (fresh >= s.target || template === undefined) retire = s.stale.length;
    else if (needNew > pool.max - total) retire = Math.min(s.stale.length, needNew - (pool.max - total));
    // A lowered max: ready VMs beyond it go too (claimed ones never).
    const over = total - retire - pool.max;
    const extra = over > 0 ? s.ready.filter((r) => !s.stale.includes(r)).slice(0, over) : [];
    const retireOne = async (vm: string) => {
      const taken = Number(
        await retireScript.run(redis, [keys.poolReady(pool.name), keys.poolVm(pool.name, vm)], [vm]),
      );
      if (taken !== 1) return; // claimed meanwhile: it is someone's now
      total -= 1;
      logger.info({ pool: pool.name, vm }, "pool VM retired");
      await destroyPoolVm(this.#deps, vm);
    };
    for (const r of [...s.stale.slice(0, retire), ...extra]) await retireOne(r.vm);
    if (template === undefined) return;
    const keep = s.stale.slice(retire);
    const creates = Math.min(needNew, pool.max - total, pool.refillConcurrency - s.starting.size);
    for (let i = 0; i < creates; i++) {
      const code = await this.#start(pool, template);
      if (code === undefined) continue;
      // The hosts are full while stale VMs hold room: retire one and try again (next pass).
      const next = keep.shift();
      if (code === "NO_CAPACITY" && next !== undefined) await retireOne(next.vm);
      break;
    }
  }

  /** Asks the fleet for one VM of the pool; the error's code (kept for `pool ls`) when it refuses. */
  async #start(pool: StoredPool, template: TemplateView): Promise<string | undefined> {
    const { redis, keys, fleet, logger } = this.#deps;
    const vm = `${pool.name}-${poolVmSuffix()}`;
    const now = Date.now();
    const reserved = await startScript.run(
      redis,
      [keys.pool(pool.name), keys.poolStarting(pool.name), keys.poolVm(pool.name, vm)],
      [vm, pendingEntry(now), "vm", vm, "templateVersion", String(template.version), "createdAt", String(now)],
    );
    if (Number(reserved) === 0) return undefined; // the pool was removed meanwhile
    const { guestReady, ...spec } = template.spec;
    try {
      const job = await fleet.createVm(
        { ...spec, name: vm, labels: { ...spec.labels, [POOL_LABEL]: pool.name } },
        {
          guestReady: guestReady ?? true,
          ...(pool.tenant === undefined ? {} : { tenant: pool.tenant }),
          ...(pool.quota === undefined ? {} : { quota: pool.quota }),
        },
      );
      if (Number(await startedScript.run(redis, [keys.poolStarting(pool.name)], [vm, job.id])) === 0) {
        // `pool rm` took it while its create was being asked for: it goes at once.
        logger.info({ pool: pool.name, vm, jobId: job.id }, "pool removed while a VM was being asked for");
        await destroyPoolVm(this.#deps, vm);
        return undefined;
      }
      logger.info({ pool: pool.name, vm, jobId: job.id }, "pool VM starting");
      return undefined;
    } catch (error) {
      const info = toErrorInfo(error);
      await this.#dropStarting(pool, vm);
      await this.#note(pool.name, `${info.code} ${info.message}`);
      logger.warn({ pool: pool.name, code: info.code, err: error }, "pool VM not started");
      return info.code;
    }
  }

  /**
   * Destroys VMs labelled with a pool that does not hold them: the pool is gone, or the VM was
   * dropped from it (a crash between steps). A pool's sets are read in one step, so a VM moving
   * from starting to ready to claimed meanwhile is always found.
   */
  async #sweepOrphans(): Promise<void> {
    const { redis, keys, fleet, logger } = this.#deps;
    const held = new Map<string, Set<string> | undefined>();
    for (const record of await fleet.vms.list()) {
      const pool = record.labels[POOL_LABEL];
      if (pool === undefined || record.state === "destroying") continue;
      if (!held.has(pool)) {
        const r = await redis
          .multi()
          .exists(keys.pool(pool))
          .hkeys(keys.poolStarting(pool))
          .zrange(keys.poolReady(pool), 0, -1)
          .hkeys(keys.poolClaimed(pool))
          .exec();
        const exists = Number(r?.[0]?.[1] ?? 0) === 1;
        const names = (r ?? []).slice(1).flatMap(([, v]) => (Array.isArray(v) ? (v as string[]) : []));
        held.set(pool, exists ? new Set(names) : undefined);
      }
      const vms = held.get(pool);
      if (vms?.has(record.name)) continue;
      // A create asked for in this very pass would be in `starting` already (it is written first).
      logger.info({ pool, vm: record.name }, "pool manager: destroying a VM its pool does not hold");
      await destroyPoolVm(this.#deps, record.name);
    }
  }
}
