export * from "./deps.js";
export * from "./keys.js";
export * from "./leases/lease-store.js";
export * from "./lua.js";
export * from "./templates/template-store.js";
