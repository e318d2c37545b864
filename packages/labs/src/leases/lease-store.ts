import { randomBytes } from "node:crypto";
import { type LeaseKind, type LeaseView, VirtfleetError } from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { LabKeys } from "../keys.js";
import { LuaScript } from "../lua.js";
import type { TenantScope } from "../templates/template-store.js";

const extendScript = new LuaScript("lease-extend", 2);
const takeDueScript = new LuaScript("lease-take-due", 2);

/** A new lease id: `lease-` and 16 hex characters. */
export function newLeaseId(): string {
  return `lease-${randomBytes(8).toString("hex")}`;
}

export interface NewLease {
  kind: LeaseKind;
  target: string;
  pool?: string;
  tenant?: string;
  ttlMs: number;
  maxLifetimeMs: number;
}

/** A lease's hash fields as written (by `create` here, or by a script such as pool-claim.lua). */
export function leaseFields(id: string, lease: NewLease, now: number): Record<string, string> {
  const expires = now + Math.min(lease.ttlMs, lease.maxLifetimeMs);
  return {
    id,
    kind: lease.kind,
    target: lease.target,
    pool: lease.pool ?? "",
    tenant: lease.tenant ?? "",
    createdAt: String(now),
    expiresAt: String(expires),
    maxExpiresAt: String(now + lease.maxLifetimeMs),
  };
}

/**
 * Leases on claimed VMs and labs: each has an `expiresAt` in one sorted set, which the reaper
 * takes from atomically. `extend` resets a lease from now, up to its maximum lifetime.
 */
export class LeaseStore {
  readonly #redis: Redis;
  readonly #keys: LabKeys;

  constructor(redis: Redis, keys: LabKeys) {
    this.#redis = redis;
    this.#keys = keys;
  }

  async create(lease: NewLease, now = Date.now()): Promise<LeaseView> {
    const id = newLeaseId();
    const fields = leaseFields(id, lease, now);
    await this.#redis
      .multi()
      .hset(this.#keys.lease(id), fields)
      .zadd(this.#keys.leases(), Number(fields.expiresAt), id)
      .exec();
    return toView(fields);
  }

  /** A lease, or undefined (also another tenant's). */
  async get(id: string, scope: TenantScope = {}): Promise<LeaseView | undefined> {
    if (!/^lease-[0-9a-f]{1,64}$/.test(id)) return undefined;
    const h = await this.#redis.hgetall(this.#keys.lease(id));
    if (h.id === undefined) return undefined;
    if (scope.tenant !== undefined && h.tenant !== "" && h.tenant !== scope.tenant) return undefined;
    return toView(h);
  }

  /** Ends the lease `byMs` from now (never past its maximum). NOT_FOUND: none, or already expired. */
  async extend(id: string, byMs: number, scope: TenantScope = {}): Promise<LeaseView> {
    if ((await this.get(id, scope)) === undefined)
      throw new VirtfleetError("NOT_FOUND", `no lease "${id}"`, { field: "leaseId" });
    const r = Number(
      await extendScript.run(this.#redis, [this.#keys.lease(id), this.#keys.leases()], [id, Date.now(), byMs]),
    );
    if (r === -1) throw new VirtfleetError("NOT_FOUND", `no lease "${id}"`, { field: "leaseId" });
    if (r === -2) throw new VirtfleetError("NOT_FOUND", `lease "${id}" has expired`, { field: "leaseId" });
    const view = await this.get(id);
    if (view === undefined) throw new VirtfleetError("NOT_FOUND", `no lease "${id}"`, { field: "leaseId" });
    return view;
  }

  /**
   * Takes up to `limit` expired leases for reaping (atomic: no two reapers get the same one). A
   * lease taken by a reaper that did not `finish` it within `retryMs` is handed out again with
   * `first: false`.
   */
  async takeDue(now = Date.now(), limit = 50, retryMs = 60_000): Promise<{ lease: LeaseView; first: boolean }[]> {
    const flat = (await takeDueScript.run(
      this.#redis,
      [this.#keys.leases(), this.#keys.leasesReaping()],
      [now, limit, retryMs],
    )) as (string | number)[];
    const out: { lease: LeaseView; first: boolean }[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      const id = String(flat[i]);
      const h = await this.#redis.hgetall(this.#keys.lease(id));
      if (h.id === undefined) {
        await this.#redis.zrem(this.#keys.leasesReaping(), id);
        continue;
      }
      out.push({ lease: toView(h), first: Number(flat[i + 1]) === 1 });
    }
    return out;
  }

  /** Removes a lease for good (reaped, released, or its VM or lab removed). */
  async end(id: string): Promise<void> {
    await this.#redis
      .multi()
      .zrem(this.#keys.leases(), id)
      .zrem(this.#keys.leasesReaping(), id)
      .del(this.#keys.lease(id))
      .exec();
  }

  /** Every live lease (not yet expired), soonest first. */
  async list(scope: TenantScope = {}): Promise<LeaseView[]> {
    const ids = await this.#redis.zrange(this.#keys.leases(), 0, -1);
    const views = await Promise.all(ids.map((id) => this.get(id, scope)));
    return views.filter((v): v is LeaseView => v !== undefined);
  }
}

function toView(h: Record<string, string>): LeaseView {
  const iso = (ms: string | undefined) => new Date(Number(ms ?? 0)).toISOString();
  return {
    id: h.id ?? "",
    kind: h.kind === "lab" ? "lab" : "claim",
    target: h.target ?? "",
    ...(h.pool ? { pool: h.pool } : {}),
    ...(h.tenant ? { tenant: h.tenant } : {}),
    createdAt: iso(h.createdAt),
    expiresAt: iso(h.expiresAt),
    maxExpiresAt: iso(h.maxExpiresAt),
  };
}
