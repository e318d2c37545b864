import type { LeaseView } from "@virtfleet/core";
import type { ControllerLoop, LabsDeps } from "../deps.js";
import { LeaseEvents } from "../leases/lease-events.js";
import type { LeaseHandlers } from "../leases/release-lease.js";
import { OrphanSweep } from "./orphan-sweep.js";

/** How often the reaper looks for expired leases (ms). */
export const DEFAULT_REAPER_INTERVAL_MS = 1000;
/** How many expired leases one take hands out. */
export const DEFAULT_REAPER_BATCH = 50;
/** A lease taken but not finished (its handler failed, its reaper died) is taken again after this (ms). */
export const DEFAULT_REAPER_RETRY_MS = 60_000;
/** How often the orphan sweep runs (ms). */
export const DEFAULT_ORPHAN_SWEEP_MS = 30_000;

export interface ReaperOptions {
  deps: Pick<LabsDeps, "redis" | "keys" | "fleet" | "leases" | "logger">;
  /** What an expiry does, by lease kind. A lease of a kind without one stays taken (and is logged). */
  handlers?: LeaseHandlers;
  /** Default DEFAULT_REAPER_INTERVAL_MS. */
  intervalMs?: number;
  /** Default DEFAULT_REAPER_BATCH. */
  batch?: number;
  /** Default DEFAULT_REAPER_RETRY_MS. */
  retryMs?: number;
  /** Default DEFAULT_ORPHAN_SWEEP_MS; 0 turns the sweep off. */
  orphanSweepMs?: number;
  /** Default DEFAULT_ORPHAN_MIN_AGE_MS. */
  orphanMinAgeMs?: number;
}

/**
 * Ends expired leases: each tick takes the due ones (atomically: two reapers never take the same
 * one), records each first take as an event, an audit line and a counter, has the kind's handler
 * remove what the lease holds, then ends the lease. A handler that fails leaves the lease taken, and
 * it is taken again (not recorded again) after `retryMs`. Every `orphanSweepMs` it also destroys
 * pool and lab VMs whose pool or lab is gone.
 */
export class Reaper implements ControllerLoop {
  readonly name = "reaper";
  readonly intervalMs: number;
  readonly #d: ReaperOptions["deps"];
  readonly #handlers: LeaseHandlers;
  readonly #batch: number;
  readonly #retryMs: number;
  readonly #sweepMs: number;
  readonly #sweep: OrphanSweep;
  readonly #events: LeaseEvents;
  #lastSweep = 0;

  constructor(options: ReaperOptions) {
    this.#d = options.deps;
    this.#handlers = options.handlers ?? {};
    this.intervalMs = options.intervalMs ?? DEFAULT_REAPER_INTERVAL_MS;
    this.#batch = options.batch ?? DEFAULT_REAPER_BATCH;
    this.#retryMs = options.retryMs ?? DEFAULT_REAPER_RETRY_MS;
    this.#sweepMs = options.orphanSweepMs ?? DEFAULT_ORPHAN_SWEEP_MS;
    this.#sweep = new OrphanSweep({
      deps: options.deps,
      ...(options.orphanMinAgeMs === undefined ? {} : { minAgeMs: options.orphanMinAgeMs }),
    });
    this.#events = new LeaseEvents(options.deps.redis, options.deps.keys, options.deps.logger);
  }

  async tick(): Promise<void> {
    const now = Date.now();
    for (;;) {
      const taken = await this.#d.leases.takeDue(now, this.#batch, this.#retryMs);
      await Promise.all(taken.map((t) => this.#reap(t.lease, t.first)));
      if (taken.length < this.#batch) break;
    }
    if (this.#sweepMs > 0 && now - this.#lastSweep >= this.#sweepMs) {
      this.#lastSweep = now;
      await this.#sweep.run(now);
    }
  }

  async #reap(lease: LeaseView, first: boolean): Promise<void> {
    const log = this.#d.logger.child({ leaseId: lease.id, kind: lease.kind, target: lease.target });
    // Recorded once, when first taken (before the handler runs: a reaper that dies now is retried
    // by another, which does not record it again).
    if (first) await this.#events.record(lease, "expired");
    const handler = this.#handlers[lease.kind];
    if (handler === undefined) {
      log.warn(`no handler for ${lease.kind} leases: the lease stays taken until one is set up`);
      return;
    }
    try {
      await handler.expire(lease, "expired");
      await this.#d.leases.end(lease.id);
      log.info(first ? "lease expired" : "lease expired (retried)");
    } catch (error) {
      log.error({ err: error }, `lease expiry failed; retried in ${Math.round(this.#retryMs / 1000)} s`);
    }
  }
}
