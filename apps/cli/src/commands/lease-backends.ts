import { formatDuration, VirtfleetError } from "@virtfleet/core";
import type { FleetClient } from "@virtfleet/fleet";
import { buildLeaseHandlers, createLabsDeps, releaseLease } from "@virtfleet/labs";
import type { VirtfleetApi } from "@virtfleet/sdk";
import { pino } from "pino";
import type { LeaseBackend } from "./leases.js";

/** Leases straight on Redis: the CLI releases through the same handlers as the API and the reaper. */
export function redisLeases(fleet: FleetClient, ready: () => Promise<void>): LeaseBackend {
  const redis = fleet.connect();
  const labs = createLabsDeps({ redis, fleet, logger: pino({ level: "silent" }) });
  const handlers = buildLeaseHandlers(labs.deps);
  return {
    async get(id) {
      await ready();
      const view = await labs.deps.leases.get(id);
      if (view === undefined) throw new VirtfleetError("NOT_FOUND", `no lease "${id}"`, { field: "id" });
      return view;
    },
    async extend(id, byMs) {
      await ready();
      return labs.deps.leases.extend(id, byMs);
    },
    async release(id) {
      await ready();
      return releaseLease(labs.deps, handlers, id);
    },
    async close() {
      await labs.close();
      redis.disconnect();
    },
  };
}

/** Leases through the HTTP API (the token's tenant sees only its own). */
export function apiLeases(api: VirtfleetApi, translated: <T>(call: Promise<T>) => Promise<T>): LeaseBackend {
  return {
    get: (id) => translated(api.getLease(id)),
    // A number would be read as seconds: send the duration as text (`5m`, `90s`, `1500ms`).
    extend: (id, byMs) => translated(api.extendLease(id, formatDuration(byMs))),
    release: (id) => translated(api.releaseLease(id)),
    async close() {},
  };
}
