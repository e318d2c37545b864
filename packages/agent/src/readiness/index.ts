export * from "./addresses.js";
export * from "./agent.js";
export * from "./cloud-init.js";
export * from "./console.js";
export * from "./ip.js";
export * from "./probe.js";
export * from "./wait.js";
