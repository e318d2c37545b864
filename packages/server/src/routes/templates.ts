import {
  parseOrThrow,
  TemplateName,
  TemplatePutResult,
  TemplateRemoved,
  TemplateSpec,
  TemplateView,
} from "@virtfleet/core";
import type { TemplateStore } from "@virtfleet/labs";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import { checkNetworks } from "../network-policy.js";
import type { RouteDoc } from "../openapi.js";
import { type RouteContext, tenantScope } from "./route-context.js";

/** The template routes, for the OpenAPI document. */
export const TEMPLATE_ROUTES: readonly RouteDoc[] = [
  {
    method: "put",
    path: "/v1/templates/{name}",
    summary:
      "Store a template (a VM spec without name, plus guestReady): a changed spec makes a new version, " +
      "the same spec keeps it (`changed: false`)",
    scope: "vms:write",
    body: TemplateSpec,
    status: 200,
    response: TemplatePutResult,
    mutating: true,
  },
  {
    method: "get",
    path: "/v1/templates",
    summary: "The tenant's templates (and the shared ones), by name",
    scope: "vms:read",
    status: 200,
    response: z.array(TemplateView),
  },
  {
    method: "get",
    path: "/v1/templates/{name}",
    summary: "One template",
    scope: "vms:read",
    status: 200,
    response: TemplateView,
  },
  {
    method: "delete",
    path: "/v1/templates/{name}",
    summary: "Remove a template (409 NAME_CLASH while a pool makes VMs from it; VMs made from it stay)",
    scope: "vms:write",
    status: 200,
    response: TemplateRemoved,
    mutating: true,
  },
];

function nameOf(request: FastifyRequest): string {
  return parseOrThrow(TemplateName, (request.params as { name: string }).name, "name");
}

/**
 * `/v1/templates`: named, versioned VM specs. A tenant sees its own and the shared ones (stored
 * with no tenant, by an operator through Redis), and changes only its own; an admin token sees all.
 */
export function registerTemplateRoutes(app: FastifyInstance, ctx: RouteContext, templates: TemplateStore): void {
  app.put("/v1/templates/:name", (request, reply) =>
    ctx.mutating(request, reply, "vms:write", async (p) => {
      const name = nameOf(request);
      const spec = parseOrThrow(TemplateSpec, request.body, "body");
      // The template's networks are the token's to attach to, as with a create.
      checkNetworks(p, [["body.networks", spec.networks]]);
      const stored = await templates.put(name, spec, { tenant: p.tenant });
      return { status: 200, body: stored };
    }),
  );

  app.get("/v1/templates", async (request) => {
    const p = ctx.principal(request, "vms:read");
    return templates.list(tenantScope(p));
  });

  app.get("/v1/templates/:name", async (request) => {
    const p = ctx.principal(request, "vms:read");
    return templates.require(nameOf(request), tenantScope(p), "name");
  });

  app.delete("/v1/templates/:name", (request, reply) =>
    ctx.mutating(request, reply, "vms:write", async (p) => {
      const name = nameOf(request);
      await templates.remove(name, tenantScope(p));
      return { status: 200, body: { name, removed: true } };
    }),
  );
}
