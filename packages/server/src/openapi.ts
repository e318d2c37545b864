import {
  BatchAccepted,
  BatchRequest,
  BatchView,
  CreateVmRequest,
  HostViewOut,
  ImageImportInput,
  ImageRecord,
  ImageViewOut,
  JobAccepted,
  JobView,
  ListVmsQuery,
  Problem,
  ProgressEvent,
  VmView,
} from "@virtfleet/core";
import { z } from "zod";
import { FAILED_JOB_ROUTES } from "./routes/failed-jobs.js";
import { FLEET_EVENT_ROUTES } from "./routes/fleet-events.js";
import { HOST_ROUTES } from "./routes/hosts.js";
import { LAB_ROUTES } from "./routes/labs.js";
import { LEASE_ROUTES } from "./routes/leases.js";
import { POOL_ROUTES } from "./routes/pools-openapi.js";
import { TEMPLATE_ROUTES } from "./routes/templates.js";
import { CONSOLE_ROUTES } from "./routes/vm-console.js";

export interface RouteDoc {
  method: "get" | "post" | "put" | "patch" | "delete";
  path: string;
  summary: string;
  scope?: string;
  body?: z.ZodType;
  query?: z.ZodObject;
  status: number;
  response?: z.ZodType;
  sse?: boolean;
  mutating?: boolean;
  /** Further error answers of this route (status → description). */
  errors?: Record<string, string>;
}

const CancelAnswer = z.object({ jobId: z.string(), outcome: z.enum(["cancelled", "cancelling", "done", "failed"]) });

/** Every route of `/v1`: the server's routes and the OpenAPI document come from this one list. */
export const ROUTES: readonly RouteDoc[] = [
  {
    method: "post",
    path: "/v1/vms",
    summary: "Create one VM",
    scope: "vms:write",
    body: CreateVmRequest,
    status: 202,
    response: JobAccepted,
    mutating: true,
  },
  {
    method: "post",
    path: "/v1/batches",
    summary: "Create many VMs (a list, or a template with count and a {n} name pattern)",
    scope: "vms:write",
    body: BatchRequest,
    status: 202,
    response: BatchAccepted,
    mutating: true,
  },
  {
    method: "get",
    path: "/v1/vms",
    summary: "List the tenant's VMs",
    scope: "vms:read",
    query: ListVmsQuery,
    status: 200,
    response: z.array(VmView),
  },
  { method: "get", path: "/v1/vms/{name}", summary: "One VM", scope: "vms:read", status: 200, response: VmView },
  {
    method: "delete",
    path: "/v1/vms/{name}",
    summary: "Destroy a VM and its storage",
    scope: "vms:write",
    status: 202,
    response: JobAccepted,
    mutating: true,
  },
  { method: "get", path: "/v1/jobs/{id}", summary: "A job's state", scope: "vms:read", status: 200, response: JobView },
  {
    method: "post",
    path: "/v1/jobs/{id}/cancel",
    summary: "Cancel a job (a running one is aborted and rolled back)",
    scope: "vms:write",
    status: 200,
    response: CancelAnswer,
    mutating: true,
  },
  {
    method: "get",
    path: "/v1/jobs/{id}/events",
    summary: "A job's progress as Server-Sent Events (resume with Last-Event-ID)",
    scope: "vms:read",
    status: 200,
    response: ProgressEvent,
    sse: true,
  },
  {
    method: "get",
    path: "/v1/batches/{id}",
    summary: "A batch: counts by state and each VM's state",
    scope: "vms:read",
    status: 200,
    response: BatchView,
  },
  {
    method: "get",
    path: "/v1/batches/{id}/events",
    summary: "A batch's progress as Server-Sent Events (resume with Last-Event-ID)",
    scope: "vms:read",
    status: 200,
    response: ProgressEvent,
    sse: true,
  },
  {
    method: "get",
    path: "/v1/hosts",
    summary: "The fleet's hosts, capacity and allocation",
    scope: "hosts:read",
    status: 200,
    response: z.array(HostViewOut),
  },
  {
    method: "get",
    path: "/v1/images",
    summary: "The image catalogue (the hosts holding each image only for a token with hosts:read)",
    scope: "vms:read",
    status: 200,
    response: z.array(ImageViewOut),
  },
  {
    method: "post",
    path: "/v1/images",
    summary: "Catalogue an image: a URL workers pull (with an optional sha256), or a file on one host",
    scope: "admin",
    body: ImageImportInput,
    status: 201,
    response: ImageRecord,
    mutating: true,
  },
  {
    method: "delete",
    path: "/v1/images/{name}",
    summary: "Take an image out of the catalogue (hosts keep their files)",
    scope: "admin",
    status: 200,
    response: z.object({ name: z.string(), removed: z.literal(true) }),
    mutating: true,
  },
  ...TEMPLATE_ROUTES,
  ...LAB_ROUTES,
  ...POOL_ROUTES,
  ...LEASE_ROUTES,
  ...HOST_ROUTES,
  ...FAILED_JOB_ROUTES,
  ...CONSOLE_ROUTES,
  ...FLEET_EVENT_ROUTES,
];

function schema(s: z.ZodType, io: "input" | "output"): Record<string, unknown> {
  const { $schema: _drop, ...rest } = z.toJSONSchema(s, { io, unrepresentable: "any" }) as Record<string, unknown>;
  return rest;
}

/** The OpenAPI 3.1 document of the API, generated from the same zod schemas that validate requests. */
export function buildOpenApi(serverUrl = "/"): Record<string, unknown> {
  const problemRef = { $ref: "#/components/schemas/Problem" };
  const problemResponse = (description: string) => ({
    description,
    content: { "application/problem+json": { schema: problemRef } },
  });
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of ROUTES) {
    const params = [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => ({
      name: m[1],
      in: "path",
      required: true,
      schema: { type: "string" },
    }));
    const query =
      r.query === undefined
        ? []
        : Object.keys(r.query.shape).map((name) => ({
            name,
            in: "query",
            required: false,
            schema: { type: "string" },
          }));
    const headers = [
      ...(r.mutating
        ? [{ name: "Idempotency-Key", in: "header", required: false, schema: { type: "string", maxLength: 255 } }]
        : []),
      ...(r.sse ? [{ name: "Last-Event-ID", in: "header", required: false, schema: { type: "string" } }] : []),
    ];
    const responses: Record<string, unknown> = {
      [String(r.status)]: {
        description: r.sse ? "a stream of progress events" : "success",
        content: r.sse
          ? {
              "text/event-stream": {
                schema: {
                  type: "string",
                  description: "events: `id`, `event: progress`, `data`: a ProgressEvent",
                  "x-event-schema": schema(r.response as z.ZodType, "output"),
                },
              },
            }
          : { "application/json": { schema: schema(r.response as z.ZodType, "output") } },
      },
      "400": problemResponse("invalid input: `field` names it"),
      "401": problemResponse("no or unknown bearer token"),
      "403": problemResponse(
        "the token lacks the scope, may not attach guests to a network of the spec (`field` names it), or the tenant's quota is exceeded",
      ),
      "404": problemResponse("not found (or another tenant's)"),
      "429": problemResponse(
        r.sse ? "rate limited, or the token already holds its most open event streams" : "rate limited",
      ),
    };
    if (r.mutating) responses["409"] = problemResponse("conflict: name clash, no capacity, or Idempotency-Key reused");
    for (const [status, description] of Object.entries(r.errors ?? {}))
      responses[status] = problemResponse(description);
    paths[r.path] ??= {};
    (paths[r.path] as Record<string, unknown>)[r.method] = {
      summary: r.summary,
      operationId: `${r.method}${r.path
        .replace(/\/v1/, "")
        .replace(/\{(\w+)\}/g, "By_$1")
        .replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ?? "").toUpperCase())}`,
      ...(r.scope === undefined ? {} : { description: `Scope: \`${r.scope}\` (or \`admin\`).` }),
      parameters: [...params, ...query, ...headers],
      ...(r.body === undefined
        ? {}
        : { requestBody: { required: true, content: { "application/json": { schema: schema(r.body, "input") } } } }),
      responses,
      security: [{ bearer: [] }],
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "virtfleet API",
      version: "1.0.0",
      description:
        "Provision KVM virtual machines in bulk across a fleet of hosts. Errors are RFC 9457 problem details with a stable `code`.",
    },
    servers: [{ url: serverUrl }],
    paths,
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      schemas: { Problem: schema(Problem, "output") },
    },
  };
}
