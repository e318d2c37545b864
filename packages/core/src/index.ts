/**
 * @virtfleet/core: what every part of virtfleet shares and nothing more: the zod schemas of the
 * contract (VM spec, job payloads, events and phases, host status, placement options, API and lab
 * bodies), the stable error codes and VirtfleetError, and the limits and defaults those schemas use.
 * No I/O.
 */
export * from "./api.js";
export * from "./clock.js";
export * from "./cloud-init.js";
export * from "./dashboard.js";
export * from "./errors.js";
export * from "./events.js";
export * from "./host.js";
export * from "./images.js";
export * from "./jobs.js";
export * from "./labs.js";
export * from "./log-level.js";
export * from "./names.js";
export * from "./network-allow.js";
export * from "./placement.js";
export * from "./power.js";
export * from "./process-end.js";
export * from "./vm-spec.js";
