import { z } from "zod";
import { DEFAULT_POOL_TICK_MS } from "../pools/pool-manager.js";
import { DEFAULT_ORPHAN_SWEEP_MS, DEFAULT_REAPER_INTERVAL_MS } from "../reaper/reaper.js";
import type { ControllerLoopsOptions } from "./build-loops.js";
import { DEFAULT_CONTROLLER_LOCK_MS } from "./controller.js";

/** `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`. */
export const Flag = z
  .string()
  .trim()
  .toLowerCase()
  .pipe(z.enum(["1", "0", "true", "false", "yes", "no", "on", "off"]))
  .transform((v) => v === "1" || v === "true" || v === "yes" || v === "on");

/** The controller's environment variables (the worker's and virtfleet-controller's). */
export const ControllerEnv = z.object({
  /** The controller's lock lives this long unless renewed: a dead controller is replaced within it. */
  VIRTFLEET_CONTROLLER_LOCK_MS: z.coerce.number().int().min(300).max(600_000).default(DEFAULT_CONTROLLER_LOCK_MS),
  /** How often the reaper looks for expired leases. */
  VIRTFLEET_REAPER_INTERVAL_MS: z.coerce.number().int().min(50).max(600_000).default(DEFAULT_REAPER_INTERVAL_MS),
  /** How often the reaper destroys pool and lab VMs whose pool or lab is gone; 0: never. */
  VIRTFLEET_ORPHAN_SWEEP_MS: z.coerce.number().int().min(0).max(86_400_000).default(DEFAULT_ORPHAN_SWEEP_MS),
  /** How often the pool manager looks at every pool (it also runs at once when a pool changes). */
  VIRTFLEET_POOL_INTERVAL_MS: z.coerce.number().int().min(50).max(600_000).default(DEFAULT_POOL_TICK_MS),
});
export type ControllerEnv = z.infer<typeof ControllerEnv>;

/** The controller's options from its parsed environment. */
export function controllerOptionsFromEnv(env: ControllerEnv): { lockMs: number; loops: ControllerLoopsOptions } {
  return {
    lockMs: env.VIRTFLEET_CONTROLLER_LOCK_MS,
    loops: {
      reaper: { intervalMs: env.VIRTFLEET_REAPER_INTERVAL_MS, orphanSweepMs: env.VIRTFLEET_ORPHAN_SWEEP_MS },
      pools: { intervalMs: env.VIRTFLEET_POOL_INTERVAL_MS },
    },
  };
}
