export * from "./auth.js";
export * from "./callback-url.js";
export * from "./idempotency.js";
export * from "./metrics.js";
export * from "./openapi.js";
export * from "./problem.js";
export * from "./server.js";
export * from "./webhooks.js";
