import type { Scope } from "@virtfleet/core";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Principal } from "../auth.js";

/** What the ApiServer lends a route module (`routes/<concept>.ts`): authentication and mutating calls. */
export interface RouteContext {
  /** The caller, or UNAUTHENTICATED / FORBIDDEN when it lacks `scope`. */
  principal(request: FastifyRequest, scope: Scope): Principal;
  /**
   * A mutating call: the scope check, `Idempotency-Key`, then `work`, whose answer is sent (and kept
   * for a retry with the same key).
   */
  mutating(
    request: FastifyRequest,
    reply: FastifyReply,
    scope: Scope,
    work: (p: Principal) => Promise<{ status: number; body: unknown }>,
  ): Promise<unknown>;
}

/** What a tenant's call may see and change: everything for an admin token, else its tenant's own. */
export function tenantScope(p: Principal): { tenant?: string } {
  return p.scopes.has("admin") ? {} : { tenant: p.tenant };
}
