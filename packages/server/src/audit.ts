import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import type { Principal } from "./auth.js";

declare module "fastify" {
  interface FastifyRequest {
    /** The problem code a refused call was answered with (for its audit line). */
    problemCode?: string;
  }
}

const MUTATING_METHODS: ReadonlySet<string> = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** A mutating call: every POST, PUT, PATCH and DELETE under /v1. */
export function isMutating(request: FastifyRequest): boolean {
  return MUTATING_METHODS.has(request.method) && request.url.startsWith("/v1/");
}

/**
 * Writes one audit line for every mutating call once it is answered, accepted or refused, wherever
 * it was refused (401 before the route, 429 by the rate limit, 400 for an unreadable body, 403, 404,
 * 409, quotas in the route): `"audit":true`, the token id and tenant (when the token is known), the
 * action (method and route), the target (the URL), the outcome (the status) and the problem's code.
 */
export function auditMutatingCalls(
  app: FastifyInstance,
  logger: Logger,
  principalOf: (request: FastifyRequest) => Principal | undefined,
): void {
  app.addHook("onResponse", async (request, reply) => {
    if (!isMutating(request)) return;
    const p = principalOf(request);
    logger.info(
      {
        audit: true,
        ...(p === undefined ? {} : { tokenId: p.tokenId, tenant: p.tenant }),
        action: `${request.method} ${request.routeOptions.url ?? request.url.split("?")[0]}`,
        target: request.url,
        outcome: reply.statusCode,
        ...(request.problemCode === undefined ? {} : { code: request.problemCode }),
      },
      "audit",
    );
  });
}
