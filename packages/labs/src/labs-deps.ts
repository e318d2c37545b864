import { type FleetClient, PowerClient } from "@virtfleet/fleet";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { LabsDeps } from "./deps.js";
import { LabKeys } from "./keys.js";
import { LeaseStore } from "./leases/lease-store.js";
import { TemplateStore } from "./templates/template-store.js";

/**
 * LabsDeps over a connection and a fleet client the caller already has (the API server's, the
 * CLI's). `close` closes only what this opened (power control's blocking connections).
 */
export function createLabsDeps(options: { redis: Redis; fleet: FleetClient; logger: Logger }): {
  deps: LabsDeps;
  close(): Promise<void>;
} {
  const { redis, fleet, logger } = options;
  const keys = new LabKeys(fleet.keys.prefix);
  const power = new PowerClient(redis, keys.fleet);
  return {
    deps: {
      redis,
      keys,
      fleet,
      templates: new TemplateStore(redis, keys),
      leases: new LeaseStore(redis, keys),
      power,
      logger,
    },
    close: () => power.close(),
  };
}
