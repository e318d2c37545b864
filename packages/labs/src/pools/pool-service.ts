import { randomBytes } from "node:crypto";
import {
  ClaimRequest,
  type ClaimResult,
  DEFAULT_CLAIM_TTL_MS,
  DEFAULT_MAX_LIFETIME_MS,
  DEFAULT_MAX_READY_AGE_MS,
  DEFAULT_REFILL_CONCURRENCY,
  type ErrorCode,
  type LeaseView,
  POOL_LABEL,
  PoolCreateRequest,
  PoolName,
  PoolUpdateRequest,
  type PoolView,
  type PoolVmView,
  parseOrThrow,
  VirtfleetError,
  VmName,
} from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { LabsDeps, LeaseHandler } from "../deps.js";
import { leaseFields, newLeaseId } from "../leases/lease-store.js";
import { LuaScript } from "../lua.js";
import { AUTOSCALE_WINDOW_MS } from "./autoscale.js";
import { destroyPoolVm } from "./pool-destroy.js";
import { type PoolScope, poolFields, poolVisible, readPool, type StoredPool } from "./pool-records.js";
import { belowReason, isStale, readPoolState, toPoolView } from "./pool-state.js";

const claimScript = new LuaScript("pool-claim", 6);
const unclaimScript = new LuaScript("pool-unclaim", 4);
const removeScript = new LuaScript("pool-remove", 7);

/** How long a claim waits for a resume (the worker answers in ~20 ms). */
const RESUME_TIMEOUT_MS = 15_000;
/** How long `pool rm --wait` waits for every VM of the pool to be gone. */
const REMOVE_WAIT_MS = 300_000;

export interface RemoveResult {
  /** Every VM the pool held, now being destroyed (or cancelled while being made). */
  vms: string[];
  /** The destroy jobs (to wait for). */
  jobs: string[];
}

/**
 * Warm pools: their settings, and what a producer does to them (claim a ready VM, release it).
 * The pool manager (PoolManager) keeps them filled.
 */
export class PoolService {
  readonly #deps: LabsDeps;
  /** What a claim lease's expiry or release does: destroy that VM and forget it (idempotent). */
  readonly leaseHandler: LeaseHandler;

  constructor(deps: LabsDeps) {
    this.#deps = deps;
    this.leaseHandler = {
      expire: async (lease: LeaseView) => {
        if (lease.kind !== "claim" || lease.pool === undefined) return;
        await this.#forgetClaimed(lease.pool, lease.target);
      },
    };
  }

  get #redis(): Redis {
    return this.#deps.redis;
  }

  /** Makes a pool. NOT_FOUND (field `template`) when its template does not exist; NAME_CLASH when the name is taken. */
  async create(input: unknown, scope: PoolScope = {}): Promise<PoolView> {
    const req = parseOrThrow(PoolCreateRequest, input);
    await this.#deps.templates.require(req.template, scope, "template");
    const { keys } = this.#deps;
    const pool: StoredPool = {
      name: req.name,
      template: req.template,
      minReady: req.minReady,
      max: req.max,
      maxReadyAgeMs: req.maxReadyAge ?? DEFAULT_MAX_READY_AGE_MS,
      refillConcurrency: req.refillConcurrency ?? DEFAULT_REFILL_CONCURRENCY,
      idle: req.idle ?? "pause",
      targetReady: req.targetReady ?? "min",
      claimTtlMs: req.claimTtl ?? DEFAULT_CLAIM_TTL_MS,
      maxLifetimeMs: req.maxLifetime ?? DEFAULT_MAX_LIFETIME_MS,
      ...(scope.tenant === undefined ? {} : { tenant: scope.tenant }),
      ...(scope.quota === undefined ? {} : { quota: scope.quota }),
      createdAt: new Date().toISOString(),
    };
    if ((await this.#redis.sadd(keys.pools(), pool.name)) === 0)
      throw new VirtfleetError("NAME_CLASH", `pool "${pool.name}" exists`, { field: "name" });
    await this.#redis.hset(keys.pool(pool.name), poolFields(pool));
    await this.#redis.publish(keys.poolsChannel(), pool.name);
    this.#deps.logger.info({ pool: pool.name, template: pool.template }, "pool created");
    return this.get(pool.name, scope);
  }

  /** Changes a pool's settings (a new template: its unclaimed VMs are replaced). */
  async update(name: string, input: unknown, scope: PoolScope = {}): Promise<PoolView> {
    const pool = await this.#require(name, scope);
    const req = parseOrThrow(PoolUpdateRequest, input);
    if (req.template !== undefined) await this.#deps.templates.require(req.template, scope, "template");
    const next: StoredPool = {
      ...pool,
      ...(req.template === undefined ? {} : { template: req.template }),
      ...(req.minReady === undefined ? {} : { minReady: req.minReady }),
      ...(req.max === undefined ? {} : { max: req.max }),
      ...(req.maxReadyAge === undefined ? {} : { maxReadyAgeMs: req.maxReadyAge }),
      ...(req.refillConcurrency === undefined ? {} : { refillConcurrency: req.refillConcurrency }),
      ...(req.idle === undefined ? {} : { idle: req.idle }),
      ...(req.targetReady === undefined ? {} : { targetReady: req.targetReady }),
      ...(req.claimTtl === undefined ? {} : { claimTtlMs: req.claimTtl }),
      ...(req.maxLifetime === undefined ? {} : { maxLifetimeMs: req.maxLifetime }),
    };
    if (next.minReady > next.max)
      throw new VirtfleetError("INVALID_SPEC", `minReady (${next.minReady}) must be at most max (${next.max})`, {
        field: req.minReady === undefined ? "max" : "minReady",
      });
    const { keys } = this.#deps;
    // Only the settings: lastError and the VMs are the manager's.
    const { quota: _q, lastError: _e, ...settings } = next;
    const fields = poolFields(settings);
    delete fields.quota;
    if ((await this.#redis.exists(keys.pool(pool.name))) === 0)
      throw new VirtfleetError("NOT_FOUND", `no pool "${pool.name}"`, { field: "name" });
    await this.#redis.hset(keys.pool(pool.name), fields);
    await this.#redis.publish(keys.poolsChannel(), pool.name);
    return this.get(pool.name, scope);
  }

  /** Every pool the scope sees, by name. */
  async list(scope: PoolScope = {}): Promise<PoolView[]> {
    const names = (await this.#redis.smembers(this.#deps.keys.pools())).sort();
    const views: PoolView[] = [];
    for (const name of names) {
      const pool = await readPool(this.#redis, this.#deps.keys, name);
      if (pool === undefined || !poolVisible(pool, scope)) continue;
      views.push(toPoolView(await readPoolState(this.#redis, this.#deps.keys, pool)));
    }
    return views;
  }

  /** A pool (NOT_FOUND naming `name`, also for another tenant's). */
  async get(name: string, scope: PoolScope = {}): Promise<PoolView> {
    const pool = await this.#require(name, scope);
    return toPoolView(await readPoolState(this.#redis, this.#deps.keys, pool));
  }

  /** A pool's VMs: starting, ready (and whether stale), claimed. */
  async vms(name: string, scope: PoolScope = {}): Promise<PoolVmView[]> {
    const pool = await this.#require(name, scope);
    const now = Date.now();
    const s = await readPoolState(this.#redis, this.#deps.keys, pool, now);
    const out: PoolVmView[] = [];
    for (const [vm, entry] of s.starting)
      out.push({ name: vm, state: "starting", ...(entry.startsWith("pending:") ? {} : { jobId: entry }) });
    for (const r of s.ready)
      out.push({
        name: r.vm,
        state: "ready",
        host: r.host,
        addresses: r.addresses,
        templateVersion: r.templateVersion,
        readyAt: new Date(r.readyAt).toISOString(),
        stale: isStale(r, pool, s.templateVersion, now),
        jobId: r.jobId,
      });
    for (const [vm, leaseId] of s.claimed) {
      const rec = await this.#redis.hgetall(this.#deps.keys.poolVm(pool.name, vm));
      const expires = await this.#redis.zscore(this.#deps.keys.leases(), leaseId);
      out.push({
        name: vm,
        state: "claimed",
        ...(rec.host ? { host: rec.host } : {}),
        ...(rec.templateVersion ? { templateVersion: Number(rec.templateVersion) } : {}),
        leaseId,
        ...(expires === null ? {} : { expiresAt: new Date(Number(expires)).toISOString() }),
      });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Removes a pool and destroys all its VMs: starting ones are cancelled (or destroyed once made),
   * ready and claimed ones destroyed, the claims' leases ended. With `wait`, resolves once every
   * destroy has ended.
   */
  async remove(name: string, scope: PoolScope = {}, options: { wait?: boolean } = {}): Promise<RemoveResult> {
    const pool = await this.#require(name, scope);
    const { keys } = this.#deps;
    const n = pool.name;
    const reply = (await removeScript.run(
      this.#redis,
      [
        keys.pools(),
        keys.pool(n),
        keys.poolStarting(n),
        keys.poolReady(n),
        keys.poolClaimed(n),
        keys.poolClaims(n),
        keys.poolMakeTimes(n),
      ],
      [keys.poolVmPrefix(n), keys.poolsChannel(), n],
    )) as number | [string[], string[], string[]];
    if (reply === -1 || !Array.isArray(reply))
      throw new VirtfleetError("NOT_FOUND", `no pool "${n}"`, { field: "name" });
    const [starting, ready, claimed] = reply;
    const vms: string[] = [];
    const jobs: string[] = [];
    for (let i = 0; i < claimed.length; i += 2) {
      await this.#deps.leases.end(claimed[i + 1] as string);
    }
    const all = [...pairs(starting).map(([vm]) => vm), ...ready, ...pairs(claimed).map(([vm]) => vm)];
    for (const vm of all) {
      vms.push(vm);
      const job = await destroyPoolVm(this.#deps, vm);
      if (job !== undefined) jobs.push(job);
    }
    this.#deps.logger.info({ pool: n, vms: vms.length }, "pool removed");
    if (options.wait === true) await this.#waitGone(n, jobs);
    return { vms, jobs };
  }

  /**
   * Waits until every VM of a removed pool is gone: its own destroy jobs ended, and no VM carries the
   * pool's label any more (a create cancelled meanwhile rolls back; one the manager was asking for
   * while the pool went is destroyed by it). A destroy that failed is an error naming the VM.
   */
  async #waitGone(pool: string, jobs: string[]): Promise<void> {
    const { fleet } = this.#deps;
    const deadline = Date.now() + REMOVE_WAIT_MS;
    const failed: string[] = [];
    let code: ErrorCode = "COMMAND_FAILED";
    for (const id of jobs) {
      const last = await fleet.job(id).wait({ timeoutMs: Math.max(1, deadline - Date.now()) });
      if (last.phase === "failed") {
        failed.push(`${last.vm}: ${last.error?.message ?? last.message}`);
        code = last.error?.code ?? code;
      }
    }
    if (failed.length > 0) {
      throw new VirtfleetError(code, `pool "${pool}" removed, but destroying its VMs failed: ${failed.join("; ")}`);
    }
    // The whole fleet is listed only when the VMs known to be left are gone (a large fleet is not
    // read twice a second); in between, only those VMs are looked up.
    const labelled = async () =>
      (await fleet.vms.list()).filter((r) => r.labels[POOL_LABEL] === pool).map((r) => r.name);
    let left = await labelled();
    for (;;) {
      const present = await Promise.all(left.map((vm) => fleet.vms.get(vm)));
      left = left.filter((_, i) => present[i] !== undefined);
      if (left.length === 0) left = await labelled();
      if (left.length === 0) return;
      if (Date.now() > deadline) {
        throw new VirtfleetError(
          "PHASE_TIMEOUT",
          `pool "${pool}" removed, but ${left.length} of its VMs still exist after ${REMOVE_WAIT_MS / 1000} s: ${left.sort().join(", ")}`,
        );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /**
   * Hands over a ready VM (see pool-claim.lua), resumed when the pool keeps them paused. With none
   * ready, waits up to `wait` for one, then POOL_EMPTY.
   */
  async claim(name: string, input: unknown, scope: PoolScope = {}): Promise<ClaimResult> {
    const pool = await this.#require(name, scope);
    const req = parseOrThrow(ClaimRequest, input ?? {});
    const ttlMs = req.ttl ?? pool.claimTtlMs;
    const deadline = Date.now() + (req.wait ?? 0);
    const first = await this.#tryClaim(pool, ttlMs);
    if (first !== undefined) return first;
    if (Date.now() >= deadline) throw await this.#empty(pool);
    // Wait: every change of the pool is published; try again on each (and at least every second).
    const sub = this.#redis.duplicate({ enableAutoPipelining: false, lazyConnect: false });
    sub.on("error", () => undefined);
    let wake: (() => void) | undefined;
    sub.on("message", (_channel: string, message: string) => {
      if (message === pool.name) wake?.();
    });
    try {
      await sub.subscribe(this.#deps.keys.poolsChannel());
      for (;;) {
        const got = await this.#tryClaim(pool, ttlMs);
        if (got !== undefined) return got;
        const left = deadline - Date.now();
        if (left <= 0) throw await this.#empty(pool);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, 1000));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
    } finally {
      sub.disconnect();
    }
  }

  /**
   * Destroys a claimed VM (never reused), ends its lease; the pool refills. NOT_FOUND (field `vm`)
   * when it is not a claimed VM of a pool the scope sees (of `poolName`, when given).
   */
  async release(vmInput: unknown, scope: PoolScope = {}, poolName?: string): Promise<{ vm: string; pool: string }> {
    const vm = parseOrThrow(VmName, vmInput, "vm");
    const names = poolName === undefined ? await this.#redis.smembers(this.#deps.keys.pools()) : [poolName];
    for (const name of names) {
      if ((await this.#redis.hexists(this.#deps.keys.poolClaimed(name), vm)) === 0) continue;
      const pool = await readPool(this.#redis, this.#deps.keys, name);
      if (pool === undefined || !poolVisible(pool, scope)) continue;
      await this.#forgetClaimed(name, vm);
      return { vm, pool: name };
    }
    throw new VirtfleetError("NOT_FOUND", `"${vm}" is not a claimed pool VM`, { field: "vm" });
  }

  /** One claim attempt: a ready VM, resumed; a VM that fails to resume is destroyed and the next one tried. */
  async #tryClaim(pool: StoredPool, ttlMs: number): Promise<ClaimResult | undefined> {
    const { keys } = this.#deps;
    const n = pool.name;
    for (;;) {
      const now = Date.now();
      const version = Number((await this.#redis.hget(keys.template(pool.template), "version")) ?? 0);
      const leaseId = newLeaseId();
      const fields = leaseFields(
        leaseId,
        {
          kind: "claim",
          target: "",
          pool: n,
          ...(pool.tenant === undefined ? {} : { tenant: pool.tenant }),
          ttlMs,
          maxLifetimeMs: pool.maxLifetimeMs,
        },
        now,
      );
      const { target: _t, ...rest } = fields;
      const reply = await claimScript.run(
        this.#redis,
        [keys.poolReady(n), keys.poolClaimed(n), keys.lease(leaseId), keys.leases(), keys.poolClaims(n), keys.pool(n)],
        [
          keys.poolVmPrefix(n),
          version,
          now,
          AUTOSCALE_WINDOW_MS,
          keys.poolsChannel(),
          n,
          leaseId,
          fields.expiresAt as string,
          ...Object.entries(rest).flat(),
        ],
      );
      if (reply === -1) throw new VirtfleetError("NOT_FOUND", `no pool "${n}"`, { field: "name" });
      const [vm, host, addressesJson] = reply as [string?, string?, string?];
      if (vm === undefined) return undefined;
      let addresses = parseAddresses(addressesJson);
      if (pool.idle === "pause") {
        try {
          await this.#deps.power.power(host ?? "", vm, "resume", RESUME_TIMEOUT_MS);
        } catch (error) {
          this.#deps.logger.warn({ pool: n, vm, err: error }, "claimed VM did not resume: destroyed, trying the next");
          await this.#forgetClaimed(n, vm);
          continue;
        }
      }
      if (addresses.length === 0) addresses = (await this.#deps.fleet.vms.get(vm))?.addresses ?? [];
      return {
        vm,
        host: host ?? "",
        addresses,
        leaseId,
        expiresAt: new Date(Number(fields.expiresAt)).toISOString(),
      };
    }
  }

  /** Forgets a claimed VM (claim, record, lease) and destroys it. Idempotent. */
  async #forgetClaimed(pool: string, vm: string): Promise<void> {
    const { keys } = this.#deps;
    await unclaimScript.run(
      this.#redis,
      [keys.poolClaimed(pool), keys.poolVm(pool, vm), keys.leases(), keys.leasesReaping()],
      [vm, keys.poolsChannel(), pool, keys.lease("")],
    );
    await destroyPoolVm(this.#deps, vm);
  }

  async #empty(pool: StoredPool): Promise<VirtfleetError> {
    const s = await readPoolState(this.#redis, this.#deps.keys, pool);
    const parts = [`${s.starting.size} starting`, `${s.claimed.size} claimed`, `max ${pool.max}`];
    const below = belowReason(s);
    if (pool.lastError !== undefined) parts.push(`last create failed: ${pool.lastError}`);
    else if (below !== undefined && !below.includes("starting")) parts.push(below);
    return new VirtfleetError("POOL_EMPTY", `pool "${pool.name}" has no ready VM: ${parts.join(", ")}`, {
      field: "name",
    });
  }

  async #require(nameInput: string, scope: PoolScope): Promise<StoredPool> {
    const name = PoolName.safeParse(nameInput);
    const pool = name.success ? await readPool(this.#redis, this.#deps.keys, name.data) : undefined;
    if (pool === undefined || !poolVisible(pool, scope))
      throw new VirtfleetError("NOT_FOUND", `no pool "${nameInput}"`, { field: "name" });
    return pool;
  }
}

function pairs(flat: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i] as string, flat[i + 1] as string]);
  return out;
}

function parseAddresses(json: string | undefined): string[] {
  try {
    const v = JSON.parse(json ?? "[]") as unknown;
    return Array.isArray(v) ? v.filter((a): a is string => typeof a === "string") : [];
  } catch {
    return [];
  }
}

/** A random VM suffix: 8 characters of [a-z0-9]. */
export function poolVmSuffix(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = randomBytes(8);
  let out = "";
  for (const b of bytes) out += alphabet[b % alphabet.length];
  return out;
}
