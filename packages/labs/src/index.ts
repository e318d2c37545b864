/**
 * @virtfleet/labs: lab environments on top of the fleet: templates, labs (sets of VMs), leases,
 * warm pools, the reaper, and the controller (elected) that runs their loops; the env schema
 * (ControllerEnv) shared by apps/controller and apps/worker.
 */
export * from "./controller/build-loops.js";
export * from "./controller/controller.js";
export * from "./controller/controller-env.js";
export * from "./controller/run-controller.js";
export * from "./deps.js";
export * from "./keys.js";
export * from "./labs/lab-record.js";
export * from "./labs/lab-service.js";
export * from "./labs/lab-state.js";
export * from "./labs/lab-watcher.js";
export * from "./labs-deps.js";
export * from "./leases/lease-events.js";
export * from "./leases/lease-store.js";
export * from "./leases/release-lease.js";
export * from "./lua.js";
export * from "./pools/autoscale.js";
export * from "./pools/pool-destroy.js";
export * from "./pools/pool-manager.js";
export * from "./pools/pool-records.js";
export * from "./pools/pool-service.js";
export * from "./pools/pool-state.js";
export * from "./reaper/orphan-sweep.js";
export * from "./reaper/reaper.js";
export * from "./templates/template-store.js";
