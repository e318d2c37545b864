import { type LeaseKind, type LeaseView, VirtfleetError } from "@virtfleet/core";
import type { LabsDeps, LeaseHandler } from "../deps.js";
import { LuaScript } from "../lua.js";
import type { TenantScope } from "../templates/template-store.js";
import { LeaseEvents } from "./lease-events.js";

const takeScript = new LuaScript("lease-take", 2);

/** The handler of each kind of lease (`claim`: the pool's, `lab`: the lab's). */
export type LeaseHandlers = Partial<Record<LeaseKind, LeaseHandler>>;

/**
 * Releases a lease now (`DELETE /v1/leases/{id}`, `virtfleet lease release`): takes it out of the
 * expiry set in one step (so the reaper cannot also take it), has its kind's handler remove what it
 * holds (reason `released`), then ends it. NOT_FOUND: no such lease, another tenant's, or already
 * expired. Should the handler fail, the lease stays taken and the reaper finishes it later.
 */
export async function releaseLease(
  deps: Pick<LabsDeps, "redis" | "keys" | "leases" | "logger">,
  handlers: LeaseHandlers,
  id: string,
  scope: TenantScope = {},
): Promise<LeaseView> {
  const lease = await deps.leases.get(id, scope);
  if (lease === undefined) throw new VirtfleetError("NOT_FOUND", `no lease "${id}"`, { field: "leaseId" });
  const handler = handlers[lease.kind];
  if (handler === undefined)
    throw new VirtfleetError("INTERNAL", `no handler for ${lease.kind} leases is set up here`, { field: "leaseId" });
  const taken = Number(
    await takeScript.run(deps.redis, [deps.keys.leases(), deps.keys.leasesReaping()], [lease.id, Date.now()]),
  );
  if (taken !== 1) throw new VirtfleetError("NOT_FOUND", `lease "${id}" has expired`, { field: "leaseId" });
  await handler.expire(lease, "released");
  await deps.leases.end(lease.id);
  await new LeaseEvents(deps.redis, deps.keys, deps.logger).record(lease, "released");
  return lease;
}
