/**
 * @virtfleet/agent: the worker side of the fleet, run on every KVM host by apps/worker. HostAgent
 * takes its host's jobs from BullMQ and provisions VMs (Provisioner: qemu-img, virt-install, virsh
 * through @virtfleet/hypervisor), heartbeats the host's status and capacity, reconciles the host
 * with the fleet's records, caches images and pauses or resumes warm-pool VMs. HostMonitor is the
 * fleet monitor that one elected worker runs: hosts whose heartbeat expired (their waiting jobs
 * re-placed, running ones failed HOST_LOST) and admissions never enqueued. Defaults: defaults.ts.
 */
export * from "./console/console-tail.js";
export * from "./defaults.js";
export * from "./fleet-identity.js";
export * from "./host-agent.js";
export * from "./host-monitor.js";
export * from "./images/eviction.js";
export * from "./images/image-cache.js";
export * from "./libvirt.js";
export * from "./name-locks.js";
export * from "./ownership-rule.js";
export * from "./power/power-switch.js";
export * from "./provisioner.js";
export * from "./readiness/index.js";
export * from "./reconciler.js";
export * from "./vm-marker.js";
