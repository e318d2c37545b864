import type { PoolView } from "@virtfleet/core";
import { Gauge, Histogram, type Registry } from "prom-client";
import { METRICS_CACHE_MS } from "./metrics.js";

/**
 * Warm pools' metrics: `virtfleet_pool_vms{pool,state}` (ready, starting, claimed, stale; read at
 * scrape time) and `virtfleet_pool_claim_duration_seconds{pool,outcome}` (from a claim request to
 * its answer, observed by the API).
 */
export class PoolMetrics {
  readonly #claimSeconds: Histogram;
  readonly #list: () => Promise<PoolView[]>;
  readonly #cacheMs: number;
  #cached: { at: number; value: Promise<PoolView[]> } | undefined;

  /** `cacheMs`: one read of the pools serves every scrape within it (default METRICS_CACHE_MS). */
  constructor(registry: Registry, list: () => Promise<PoolView[]>, cacheMs = METRICS_CACHE_MS) {
    this.#list = list;
    this.#cacheMs = cacheMs;
    const vms: Gauge = new Gauge({
      name: "virtfleet_pool_vms",
      help: "VMs of each warm pool by state (ready, starting, claimed; stale: ready ones due for replacement)",
      labelNames: ["pool", "state"],
      registers: [registry],
      collect: async () => {
        const pools = await this.#read();
        vms.reset();
        for (const p of pools)
          for (const state of ["ready", "starting", "claimed", "stale"] as const)
            vms.set({ pool: p.name, state }, p[state]);
      },
    });
    this.#claimSeconds = new Histogram({
      name: "virtfleet_pool_claim_duration_seconds",
      help: "Time from a claim request to its answer, by outcome: claimed, empty (POOL_EMPTY), error",
      labelNames: ["pool", "outcome"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    });
  }

  #read(): Promise<PoolView[]> {
    const now = Date.now();
    if (this.#cached !== undefined && now - this.#cached.at < this.#cacheMs) return this.#cached.value;
    const value = this.#list();
    value.catch(() => {
      this.#cached = undefined;
    });
    this.#cached = { at: now, value };
    return value;
  }

  /** Records one claim that started at `started` (process.hrtime.bigint()). */
  observeClaim(pool: string, outcome: "claimed" | "empty" | "error", started: bigint): void {
    this.#claimSeconds.observe({ pool, outcome }, Number(process.hrtime.bigint() - started) / 1e9);
  }
}
