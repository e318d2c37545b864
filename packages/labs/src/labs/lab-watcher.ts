import type { ControllerLoop } from "../deps.js";
import type { LabService } from "./lab-service.js";

/** How often the controller moves labs on. */
export const DEFAULT_LAB_WATCH_INTERVAL_MS = 1000;

export interface LabWatcherOptions {
  /** Default DEFAULT_LAB_WATCH_INTERVAL_MS (1 s). */
  intervalMs?: number;
}

/**
 * The elected controller's loop over labs: records each lab's moves (`creating` → `ready` |
 * `failed`, `expiring` → `gone`), announces its VMs' job ends on its stream, rolls failed labs back,
 * tears expiring ones down, and removes records an hour after they ended (LabService.sync).
 */
export class LabWatcher implements ControllerLoop {
  readonly name = "labs";
  readonly intervalMs: number;
  readonly #labs: LabService;

  constructor(labs: LabService, options: LabWatcherOptions = {}) {
    this.#labs = labs;
    this.intervalMs = options.intervalMs ?? DEFAULT_LAB_WATCH_INTERVAL_MS;
  }

  tick(): Promise<void> {
    return this.#labs.syncAll();
  }
}
