/**
 * @virtfleet/fleet: the control plane in Redis, used by producers (CLI, API, labs) and workers.
 * - redis/: connections, configuration (RedisEnv), key names (Keys, KeyPrefix), Lua loading.
 * - placement/: host eligibility and the capacity ledger (atomic claims of room).
 * - admission/: one atomic step admitting a create (name, quota, room, job record).
 * - records/: the job and VM records (zod schemas JobRecord, VmRecord), event log, VM registry,
 *   batches, pending jobs.
 * - hosts/: the host registry (heartbeats, drain, reconcile requests), power and console requests
 *   (both request/reply to a host's worker through HostRpc).
 * - images/: the fleet-wide image catalogue.
 * - bundles/: the creates one call admits for one host, carried by one BullMQ job (later calls' creates
 *   may join it while it waits: open-bundles.ts).
 * - producer/: FleetClient, the producers' façade (create, destroy, cancel, follow jobs), its
 *   operations one file each, and the BullMQ job options.
 * Not HTTP: that is @virtfleet/server (library) and @virtfleet/sdk (its client).
 */
export * from "./admission/admission.js";
export * from "./admission/quota.js";
export * from "./bundles/bundle.js";
export * from "./bundles/in-queue.js";
export * from "./bundles/open-bundles.js";
export * from "./hosts/console.js";
export * from "./hosts/host-registry.js";
export * from "./hosts/host-rpc.js";
export * from "./hosts/power.js";
export * from "./images/image-catalogue.js";
export * from "./placement/capacity-ledger.js";
export * from "./placement/eligibility.js";
export * from "./placement/host-class.js";
export * from "./placement/placer.js";
export * from "./placement/policy.js";
export * from "./producer/cancel.js";
export * from "./producer/context.js";
export * from "./producer/create-batch.js";
export * from "./producer/create-many.js";
export * from "./producer/create-options.js";
export * from "./producer/destroy.js";
export * from "./producer/enqueue.js";
export * from "./producer/fleet-client.js";
export * from "./producer/fleet-events.js";
export * from "./producer/job-options.js";
export * from "./records/batches.js";
export * from "./records/event-log.js";
export * from "./records/fail-pending.js";
export * from "./records/failed-jobs.js";
export * from "./records/job-event-hub.js";
export * from "./records/job-handle.js";
export * from "./records/pending-jobs.js";
export * from "./records/recent-jobs.js";
export * from "./records/records.js";
export * from "./records/vm-registry.js";
export * from "./redis/connection.js";
export * from "./redis/keys.js";
export * from "./redis/lua.js";
export * from "./redis/redis-config.js";
export * from "./redis/redis-errors.js";
export * from "./redis/replication.js";
export * from "./redis/scripts.js";
