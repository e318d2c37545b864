export * from "./errors.js";
export * from "./virtfleet-api.js";
