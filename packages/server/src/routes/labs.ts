import { ExtendRequest, LabEvent, LabName, LabUpRequest, LabView, parseOrThrow } from "@virtfleet/core";
import type { LabOwner, LabService } from "@virtfleet/labs";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import type { Principal, requireScope } from "../auth.js";
import type { RouteDoc } from "../openapi.js";
import { sseEvent, startSse } from "../sse.js";

type Scope = Parameters<typeof requireScope>[1];

/** What the lab routes use of the server. */
export interface LabRouteContext {
  labs: LabService;
  /** The caller, with `scope` checked. */
  principal(request: FastifyRequest, scope: Scope): Principal;
  /** A mutating call: scope, Idempotency-Key, audit; `work` gives the answer. */
  mutating(
    request: FastifyRequest,
    reply: FastifyReply,
    scope: Scope,
    work: (p: Principal) => Promise<{ status: number; body: unknown }>,
  ): Promise<unknown>;
  /** The tenant's quota, as creates get it. */
  owner(p: Principal): LabOwner;
  /** The resume point of an event stream (Last-Event-ID), "0" for the start. */
  lastEventId(request: FastifyRequest): string;
  /** Aborted when the server closes: open event streams end. */
  closing: AbortSignal;
}

/** The lab routes, for the OpenAPI document. */
export const LAB_ROUTES: readonly RouteDoc[] = [
  {
    method: "post",
    path: "/v1/labs",
    summary: "Make a lab: several VMs from templates, created as one batch, under one lease",
    scope: "vms:write",
    body: LabUpRequest,
    status: 202,
    response: LabView,
    mutating: true,
  },
  {
    method: "get",
    path: "/v1/labs",
    summary: "The tenant's labs",
    scope: "vms:read",
    status: 200,
    response: z.array(LabView),
  },
  {
    method: "get",
    path: "/v1/labs/{name}",
    summary: "A lab: its state and each VM's phase, host and addresses",
    scope: "vms:read",
    status: 200,
    response: LabView,
  },
  {
    method: "post",
    path: "/v1/labs/{name}/extend",
    summary: "Extend a lab's lease: it then ends `by` from now (never past its maximum lifetime)",
    scope: "vms:write",
    body: ExtendRequest,
    status: 200,
    response: LabView,
    mutating: true,
  },
  {
    method: "delete",
    path: "/v1/labs/{name}",
    summary: "Take a lab down: every VM destroyed, its lease ended",
    scope: "vms:write",
    status: 202,
    response: LabView,
    mutating: true,
  },
  {
    method: "get",
    path: "/v1/labs/{name}/events",
    summary:
      "A lab's events as Server-Sent Events (`event: lab`; ends once the lab is gone; resume with Last-Event-ID)",
    scope: "vms:read",
    status: 200,
    response: LabEvent,
    sse: true,
  },
];

/** Who sees what: a tenant its own labs, an admin every lab. */
function scopeOf(p: Principal): { tenant?: string } {
  return p.scopes.has("admin") ? {} : { tenant: p.tenant };
}

function nameOf(request: FastifyRequest): string {
  return parseOrThrow(LabName, (request.params as { name: string }).name, "name");
}

/** `POST /v1/labs`, `GET /v1/labs[/{name}]`, `POST /v1/labs/{name}/extend`, `DELETE /v1/labs/{name}`, events. */
export function registerLabRoutes(app: FastifyInstance, ctx: LabRouteContext): void {
  app.post("/v1/labs", (request, reply) =>
    ctx.mutating(request, reply, "vms:write", async (p) => {
      return { status: 202, body: await ctx.labs.up(request.body, ctx.owner(p), "body") };
    }),
  );

  app.get("/v1/labs", async (request) => {
    const p = ctx.principal(request, "vms:read");
    return ctx.labs.list(scopeOf(p));
  });

  app.get("/v1/labs/:name", async (request) => {
    const p = ctx.principal(request, "vms:read");
    return ctx.labs.require(nameOf(request), scopeOf(p));
  });

  app.post("/v1/labs/:name/extend", (request, reply) =>
    ctx.mutating(request, reply, "vms:write", async (p) => {
      const name = nameOf(request);
      const { by } = parseOrThrow(ExtendRequest, request.body, "body");
      return { status: 200, body: await ctx.labs.extend(name, by, scopeOf(p)) };
    }),
  );

  app.delete("/v1/labs/:name", (request, reply) =>
    ctx.mutating(request, reply, "vms:write", async (p) => {
      return { status: 202, body: await ctx.labs.down(nameOf(request), scopeOf(p)) };
    }),
  );

  app.get("/v1/labs/:name/events", async (request, reply) => {
    const p = ctx.principal(request, "vms:read");
    const name = nameOf(request);
    const after = ctx.lastEventId(request);
    await ctx.labs.require(name, scopeOf(p)); // NOT_FOUND before the stream starts
    const stop = new AbortController();
    const res = startSse(reply, "virtfleet lab events");
    res.on("close", () => stop.abort());
    const onClosing = () => stop.abort();
    ctx.closing.addEventListener("abort", onClosing, { once: true });
    try {
      // One blocking read per client (its own connection), until the lab is gone or the client leaves.
      for await (const { id, ...event } of ctx.labs.events(name, { after, scope: scopeOf(p), signal: stop.signal })) {
        res.write(sseEvent(id, "lab", event));
      }
    } catch (error) {
      request.log.warn({ err: error, lab: name }, "lab event stream ended");
    } finally {
      ctx.closing.removeEventListener("abort", onClosing);
      res.end();
    }
  });
}
