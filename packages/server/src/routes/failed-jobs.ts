import { FailedJobsView, type FailedJobView, ListJobsQuery, parseOrThrow } from "@virtfleet/core";
import { type Keys, recentFailures } from "@virtfleet/fleet";
import type { FastifyInstance } from "fastify";
import type { Redis } from "ioredis";
import { canSee } from "../auth.js";
import type { RouteDoc } from "../openapi.js";
import type { RouteContext } from "./route-context.js";

export const FAILED_JOB_ROUTES: readonly RouteDoc[] = [
  {
    method: "get",
    path: "/v1/jobs",
    summary: "Recent failed jobs (`state=failed`), newest first: code, message, and a failed command's argv and stderr",
    scope: "vms:read",
    query: ListJobsQuery,
    status: 200,
    response: FailedJobsView,
  },
];

/**
 * `GET /v1/jobs?state=failed&limit=N`: the tenant's (an admin's: every) recent failed jobs, from
 * their `failed` events in the fleet's all-events stream (the error each carries is the one the job
 * record keeps).
 */
export function registerFailedJobRoutes(app: FastifyInstance, ctx: RouteContext, redis: Redis, keys: Keys): void {
  app.get("/v1/jobs", async (request) => {
    const p = ctx.principal(request, "vms:read");
    const q = parseOrThrow(ListJobsQuery, request.query, "query");
    const failures = await recentFailures(redis, keys, { limit: q.limit, visible: (tenant) => canSee(p, tenant) });
    const jobs = failures.map(({ event: e }): FailedJobView => {
      const error = e.error ?? { code: "INTERNAL" as const, message: e.message };
      return {
        jobId: e.jobId,
        vm: e.vm,
        kind: e.kind,
        code: error.code,
        message: error.message,
        ...(error.command === undefined ? {} : { command: error.command }),
        ...(error.exitCode === undefined ? {} : { exitCode: error.exitCode }),
        ...(error.stderr === undefined ? {} : { stderr: error.stderr }),
        ...(e.host === undefined ? {} : { host: e.host }),
        at: e.at,
      };
    });
    return { jobs };
  });
}
