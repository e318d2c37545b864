import { PoolName, parseOrThrow, VirtfleetError, VmName } from "@virtfleet/core";
import type { PoolScope, PoolService } from "@virtfleet/labs";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import type { Principal, TenantQuota } from "../auth.js";
import type { PoolMetrics } from "../pool-metrics.js";

/** What the pool routes need of the server. */
export interface PoolRoutesContext {
  pools: PoolService;
  metrics: PoolMetrics;
  /** The caller, checked for `scope` (UNAUTHENTICATED / FORBIDDEN otherwise). */
  principal(request: FastifyRequest, scope: "vms:read" | "vms:write"): Principal;
  /** A mutating call: scope check, Idempotency-Key, then the work. */
  mutating(
    request: FastifyRequest,
    reply: FastifyReply,
    scope: "vms:write",
    work: (p: Principal) => Promise<{ status: number; body: unknown }>,
  ): Promise<unknown>;
  /** A tenant's quota (its pools' VMs count against it, claimed or not). */
  quota(tenant: string): TenantQuota;
}

const RemoveQuery = z.object({ wait: z.enum(["true", "false"]).optional() }).strict();

/** Who the caller is to the pool service: an admin sees every pool; a tenant its own. */
function readScope(p: Principal): PoolScope {
  return p.scopes.has("admin") ? {} : { tenant: p.tenant };
}

function ownerScope(p: Principal, ctx: PoolRoutesContext): PoolScope {
  const { batches: _b, ...quota } = ctx.quota(p.tenant);
  return { tenant: p.tenant, quota };
}

/**
 * Warm pools: `POST/GET /v1/pools`, `GET/PATCH/DELETE /v1/pools/{name}`, claims
 * (`POST /v1/pools/{name}/claims`, 201 or 503 POOL_EMPTY) and releases
 * (`DELETE /v1/pools/{name}/claims/{vm}`).
 */
export function registerPoolRoutes(app: FastifyInstance, ctx: PoolRoutesContext): void {
  const name = (request: FastifyRequest) => parseOrThrow(PoolName, (request.params as { name: string }).name, "name");

  app.post("/v1/pools", (request, reply) =>
    ctx.mutating(request, reply, "vms:write", async (p) => ({
      status: 201,
      body: await ctx.pools.create(request.body, ownerScope(p, ctx)),
    })),
  );

  app.get("/v1/pools", async (request) => ctx.pools.list(readScope(ctx.principal(request, "vms:read"))));

  app.get("/v1/pools/:name", async (request) => {
    const scope = readScope(ctx.principal(request, "vms:read"));
    const pool = await ctx.pools.get(name(request), scope);
    return { ...pool, vms: await ctx.pools.vms(pool.name, scope) };
  });

  app.patch("/v1/pools/:name", (request, reply) =>
    ctx.mutating(request, reply, "vms:write", async (p) => ({
      status: 200,
      body: await ctx.pools.update(name(request), request.body, readScope(p)),
    })),
  );

  app.delete("/v1/pools/:name", (request, reply) =>
    ctx.mutating(request, reply, "vms:write", async (p) => {
      const q = parseOrThrow(RemoveQuery, request.query, "query");
      const pool = name(request);
      const removed = await ctx.pools.remove(pool, readScope(p), { wait: q.wait === "true" });
      return { status: q.wait === "true" ? 200 : 202, body: { name: pool, ...removed } };
    }),
  );

  app.post("/v1/pools/:name/claims", (request, reply) =>
    ctx.mutating(request, reply, "vms:write", async (p) => {
      const pool = name(request);
      const started = process.hrtime.bigint();
      try {
        const result = await ctx.pools.claim(pool, request.body ?? {}, readScope(p));
        ctx.metrics.observeClaim(pool, "claimed", started);
        return { status: 201, body: result };
      } catch (error) {
        const empty = error instanceof VirtfleetError && error.code === "POOL_EMPTY";
        ctx.metrics.observeClaim(pool, empty ? "empty" : "error", started);
        throw error;
      }
    }),
  );

  app.delete("/v1/pools/:name/claims/:vm", (request, reply) =>
    ctx.mutating(request, reply, "vms:write", async (p) => {
      const pool = name(request);
      const vm = parseOrThrow(VmName, (request.params as { vm: string }).vm, "vm");
      return { status: 200, body: await ctx.pools.release(vm, readScope(p), pool) };
    }),
  );
}
