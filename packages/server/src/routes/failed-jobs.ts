import {
  FailedJobsView,
  type FailedJobView,
  ListJobsQuery,
  parseOrThrow,
  ValidationError,
  VmJobsView,
  type VmJobView,
} from "@virtfleet/core";
import { type Keys, recentFailures, vmJobHistory } from "@virtfleet/fleet";
import type { FastifyInstance } from "fastify";
import type { Redis } from "ioredis";
import { z } from "zod";
import { canSee } from "../auth.js";
import type { RouteDoc } from "../openapi.js";
import type { RouteContext } from "./route-context.js";

export const FAILED_JOB_ROUTES: readonly RouteDoc[] = [
  {
    method: "get",
    path: "/v1/jobs",
    summary:
      "Jobs, newest first: `state=failed` recent failed jobs (code, message, a failed command's argv and stderr); " +
      "`vm=NAME` every job of that VM (kind, latest phase, code when it failed). Exactly one of them.",
    scope: "vms:read",
    query: ListJobsQuery,
    status: 200,
    response: z.union([FailedJobsView, VmJobsView]),
  },
];

/**
 * `GET /v1/jobs?state=failed&limit=N`: the tenant's (an admin's: every) recent failed jobs, from
 * their `failed` events in the fleet's all-events stream (the error each carries is the one the job
 * record keeps). `GET /v1/jobs?vm=NAME&limit=N`: the jobs of that VM the token may see, newest
 * first, each with its latest phase, from the same stream.
 */
export function registerFailedJobRoutes(app: FastifyInstance, ctx: RouteContext, redis: Redis, keys: Keys): void {
  app.get("/v1/jobs", async (request) => {
    const p = ctx.principal(request, "vms:read");
    const q = parseOrThrow(ListJobsQuery, request.query, "query");
    if ((q.state === undefined) === (q.vm === undefined)) {
      const field = q.state === undefined ? "query.state" : "query.vm";
      throw new ValidationError([{ field, message: "give exactly one of state=failed and vm=NAME" }]);
    }
    const visible = (tenant: string | undefined) => canSee(p, tenant);
    if (q.vm !== undefined) {
      const found = await vmJobHistory(redis, keys, q.vm, { limit: q.limit, visible });
      return {
        jobs: found.map(
          ({ event: e }): VmJobView => ({
            jobId: e.jobId,
            vm: e.vm,
            kind: e.kind,
            phase: e.phase,
            message: e.message,
            ...errorFields(e.error),
            ...(e.host === undefined ? {} : { host: e.host }),
            at: e.at,
          }),
        ),
      };
    }
    const failures = await recentFailures(redis, keys, { limit: q.limit, visible });
    const jobs = failures.map(({ event: e }): FailedJobView => {
      const error = e.error ?? { code: "INTERNAL" as const, message: e.message };
      return {
        jobId: e.jobId,
        vm: e.vm,
        kind: e.kind,
        code: error.code,
        message: error.message,
        ...errorFields(error),
        ...(e.host === undefined ? {} : { host: e.host }),
        at: e.at,
      };
    });
    return { jobs };
  });
}

/** A failed job's error as the views carry it: code, and a failed command's argv, exit code and stderr. */
function errorFields(
  error: { code: FailedJobView["code"]; command?: string[]; exitCode?: number; stderr?: string } | undefined,
): Pick<VmJobView, "code" | "command" | "exitCode" | "stderr"> {
  if (error === undefined) return {};
  return {
    code: error.code,
    ...(error.command === undefined ? {} : { command: error.command }),
    ...(error.exitCode === undefined ? {} : { exitCode: error.exitCode }),
    ...(error.stderr === undefined ? {} : { stderr: error.stderr }),
  };
}
