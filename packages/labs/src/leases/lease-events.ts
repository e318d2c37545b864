import type { LeaseView } from "@virtfleet/core";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { LabKeys } from "../keys.js";

/** How many entries the lab environments' event stream keeps (about: MAXLEN ~). */
export const LAB_EVENTS_MAXLEN = 10_000;

/** What ended a lease: it ran out (the reaper), or its holder gave it back. */
export type LeaseEnd = "expired" | "released";

/** One entry of `<prefix>:labs:events` about a lease. */
export interface LeaseEvent {
  /** The stream entry's id. */
  id: string;
  type: `lease.${LeaseEnd}`;
  leaseId: string;
  kind: string;
  target: string;
  pool?: string;
  tenant?: string;
  /** ISO time. */
  at: string;
}

/**
 * Records the end of leases: an entry in the lab environments' event stream, an audit line (the
 * shape of the API's audit lines: `audit: true`, action, target, tenant), and for an expiry the
 * `expired:<kind>` counter /metrics reads.
 */
export class LeaseEvents {
  readonly #redis: Redis;
  readonly #keys: LabKeys;
  readonly #logger: Logger;

  constructor(redis: Redis, keys: LabKeys, logger: Logger) {
    this.#redis = redis;
    this.#keys = keys;
    this.#logger = logger;
  }

  async record(lease: LeaseView, end: LeaseEnd, at = new Date()): Promise<void> {
    const type = `lease.${end}`;
    const fields = [
      "type",
      type,
      "leaseId",
      lease.id,
      "kind",
      lease.kind,
      "target",
      lease.target,
      "pool",
      lease.pool ?? "",
      "tenant",
      lease.tenant ?? "",
      "at",
      at.toISOString(),
    ];
    const m = this.#redis.multi().xadd(this.#keys.events(), "MAXLEN", "~", LAB_EVENTS_MAXLEN, "*", ...fields);
    if (end === "expired") m.hincrby(this.#keys.stats(), `expired:${lease.kind}`, 1);
    await m.exec();
    this.#logger.info(
      {
        audit: true,
        action: type,
        target: lease.target,
        leaseId: lease.id,
        kind: lease.kind,
        ...(lease.pool === undefined ? {} : { pool: lease.pool }),
        ...(lease.tenant === undefined ? {} : { tenant: lease.tenant }),
        expiresAt: lease.expiresAt,
      },
      "audit",
    );
  }

  /** The last `count` lease events, oldest first. */
  async list(count = 100): Promise<LeaseEvent[]> {
    const rows = await this.#redis.xrevrange(this.#keys.events(), "+", "-", "COUNT", count);
    const out: LeaseEvent[] = [];
    for (const [id, flat] of rows.reverse()) {
      const f: Record<string, string> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i] as string] = flat[i + 1] as string;
      if (f.type !== "lease.expired" && f.type !== "lease.released") continue;
      out.push({
        id,
        type: f.type,
        leaseId: f.leaseId ?? "",
        kind: f.kind ?? "",
        target: f.target ?? "",
        ...(f.pool ? { pool: f.pool } : {}),
        ...(f.tenant ? { tenant: f.tenant } : {}),
        at: f.at ?? "",
      });
    }
    return out;
  }

  /** How many leases of each kind the reaper has expired (`expired:<kind>` counters). */
  async expiries(): Promise<Record<string, number>> {
    const h = await this.#redis.hgetall(this.#keys.stats());
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(h)) if (k.startsWith("expired:")) out[k.slice("expired:".length)] = Number(v);
    return out;
  }
}
