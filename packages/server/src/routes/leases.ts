import { ExtendRequest, LeaseId, type LeaseView, LeaseView as LeaseViewSchema, parseOrThrow } from "@virtfleet/core";
import type { LeaseStore } from "@virtfleet/labs";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { canSee, type Principal, type requireScope } from "../auth.js";
import type { RouteDoc } from "../openapi.js";
import { problem } from "../problem.js";

type Scope = Parameters<typeof requireScope>[1];

/** What the lease routes need of the server. */
export interface LeaseRoutesContext {
  leases: LeaseStore;
  /** Releases a lease through its kind's handler (releaseLease with the server's handlers). */
  release(id: string): Promise<LeaseView>;
  principal(request: FastifyRequest, scope: Scope): Principal;
  mutating(
    request: FastifyRequest,
    reply: FastifyReply,
    scope: Scope,
    work: (p: Principal) => Promise<{ status: number; body: unknown }>,
  ): Promise<unknown>;
}

/** The lease routes, for the OpenAPI document. */
export const LEASE_ROUTES: readonly RouteDoc[] = [
  {
    method: "get",
    path: "/v1/leases/{id}",
    summary: "A lease (of a claimed VM or a lab): what it holds and when it ends",
    scope: "vms:read",
    status: 200,
    response: LeaseViewSchema,
  },
  {
    method: "post",
    path: "/v1/leases/{id}/extend",
    summary: "Extend a lease: it then ends `by` from now (`30m`, `2h`), never past its maximum lifetime",
    scope: "vms:write",
    body: ExtendRequest,
    status: 200,
    response: LeaseViewSchema,
    mutating: true,
  },
  {
    method: "delete",
    path: "/v1/leases/{id}",
    summary: "Release a lease now: what it holds is removed (a claimed VM destroyed, a lab taken down)",
    scope: "vms:write",
    status: 200,
    response: LeaseViewSchema,
    mutating: true,
  },
];

/** GET/extend/DELETE a lease; a tenant sees only its own (NOT_FOUND otherwise). */
export function registerLeaseRoutes(app: FastifyInstance, ctx: LeaseRoutesContext): void {
  const visible = async (p: Principal, raw: string): Promise<LeaseView> => {
    const id = parseOrThrow(LeaseId, raw, "id");
    const lease = await ctx.leases.get(id);
    if (lease === undefined || !canSee(p, lease.tenant)) throw problem("NOT_FOUND", `no lease "${id}"`, "id");
    return lease;
  };
  const idOf = (request: FastifyRequest) => (request.params as { id: string }).id;

  app.get("/v1/leases/:id", async (request) => {
    const p = ctx.principal(request, "vms:read");
    return visible(p, idOf(request));
  });

  app.post("/v1/leases/:id/extend", (request, reply) =>
    ctx.mutating(request, reply, "vms:write", async (p) => {
      const lease = await visible(p, idOf(request));
      const body = parseOrThrow(ExtendRequest, request.body, "body");
      return { status: 200, body: await ctx.leases.extend(lease.id, body.by) };
    }),
  );

  app.delete("/v1/leases/:id", (request, reply) =>
    ctx.mutating(request, reply, "vms:write", async (p) => {
      const lease = await visible(p, idOf(request));
      return { status: 200, body: await ctx.release(lease.id) };
    }),
  );
}
