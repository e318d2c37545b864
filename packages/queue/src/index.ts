export * from "./capacity.js";
export * from "./connection.js";
export * from "./event-log.js";
export * from "./fleet-client.js";
export * from "./host-registry.js";
export * from "./job-handle.js";
export * from "./keys.js";
export * from "./vm-registry.js";
