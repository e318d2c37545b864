import type { LeaseView } from "@virtfleet/core";
import type { FleetClient } from "@virtfleet/fleet";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { LabKeys } from "./keys.js";
import type { LeaseStore } from "./leases/lease-store.js";
import type { TemplateStore } from "./templates/template-store.js";

/** Pausing and resuming a VM on its host (through that host's worker). */
export interface PowerControl {
  /**
   * `suspend` or `resume` the domain `vm` on `hostId`; after a resume the guest's clock is set
   * through its agent when it has one. Resolves once the host's worker has done it.
   */
  power(hostId: string, vm: string, action: "suspend" | "resume", timeoutMs?: number): Promise<{ state: string }>;
}

/** What every part of lab environments is built from (one Redis connection, the fleet's client). */
export interface LabsDeps {
  redis: Redis;
  keys: LabKeys;
  fleet: FleetClient;
  templates: TemplateStore;
  leases: LeaseStore;
  power: PowerControl;
  logger: Logger;
}

/** What a lease's expiry or release does to what it holds (a claimed VM, a lab). */
export interface LeaseHandler {
  /** Removes what the lease holds. Called again after a crash: must be idempotent. */
  expire(lease: LeaseView, reason: "expired" | "released"): Promise<void>;
}

/** Work the elected controller does periodically, and at once when woken. */
export interface ControllerLoop {
  readonly name: string;
  /** How often `tick` runs while elected. */
  readonly intervalMs: number;
  tick(): Promise<void>;
  /** Stops anything it started (subscriptions); the controller stops calling tick first. */
  close?(): Promise<void>;
}
