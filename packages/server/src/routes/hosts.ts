import { HostId, HostViewOut, parseOrThrow, VirtfleetError } from "@virtfleet/core";
import type { HostRegistry, HostView } from "@virtfleet/fleet";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { RouteDoc } from "../openapi.js";
import { problem } from "../problem.js";
import type { RouteContext } from "./route-context.js";

/** A host as `GET /v1/hosts` lists it (HostViewOut). */
export function hostView(h: HostView) {
  return {
    hostId: h.status.hostId,
    up: h.up,
    draining: h.draining,
    virtTypes: h.status.virtTypes,
    labels: h.status.labels,
    capacity: h.allocation.capacity,
    allocated: h.allocation.allocated,
    diskFreeGiB: h.status.diskFreeGiB,
    runningVms: h.status.runningVms,
    images: h.status.images,
    version: h.status.version,
    heartbeatAt: h.status.heartbeatAt,
  };
}

/** The drain routes, for the OpenAPI document. */
export const HOST_ROUTES: readonly RouteDoc[] = (["drain", "undrain"] as const).map((verb) => ({
  method: "post",
  path: `/v1/hosts/{id}/${verb}`,
  summary:
    verb === "drain"
      ? "Drain a host: it finishes what it runs, nothing new is placed on it (as `virtfleet hosts drain`)"
      : "Undrain a host: VMs are placed on it again (as `virtfleet hosts undrain`)",
  scope: "admin",
  status: 200,
  response: HostViewOut,
  mutating: true,
}));

/** `POST /v1/hosts/{id}/drain|undrain` (admin): HostRegistry.setDrained, the CLI's code path; 404 for an unknown host. */
export function registerHostRoutes(app: FastifyInstance, ctx: RouteContext, hosts: HostRegistry): void {
  for (const [verb, on] of [
    ["drain", true],
    ["undrain", false],
  ] as const) {
    app.post(`/v1/hosts/:id/${verb}`, (request: FastifyRequest, reply) =>
      ctx.mutating(request, reply, "admin", async () => {
        const id = parseOrThrow(HostId, (request.params as { id: string }).id, "id");
        try {
          return { status: 200, body: hostView(await hosts.setDrained(id, on)) };
        } catch (error) {
          if (error instanceof VirtfleetError && error.code === "HOST_NOT_FOUND")
            throw problem("NOT_FOUND", `no host "${id}" in the fleet`, "id");
          throw error;
        }
      }),
    );
  }
}
