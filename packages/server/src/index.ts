/**
 * @virtfleet/server: the HTTP API server as a library (ApiServer on Fastify: routes, auth and
 * tenants, idempotency, event streams, webhooks, metrics, OpenAPI). apps/api is the binary that
 * reads its environment and runs it. Defaults: defaults.ts and the DEFAULT_* next to each part.
 */
export * from "./audit.js";
export * from "./auth.js";
export * from "./callback-url.js";
export * from "./defaults.js";
export * from "./event-streams.js";
export * from "./idempotency.js";
export * from "./metrics.js";
export * from "./openapi.js";
export * from "./problem.js";
export * from "./server.js";
export * from "./webhooks.js";
