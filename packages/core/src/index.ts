export * from "./api.js";
export * from "./errors.js";
export * from "./events.js";
export * from "./host.js";
export * from "./jobs.js";
export * from "./names.js";
export * from "./placement.js";
export * from "./vm-spec.js";
