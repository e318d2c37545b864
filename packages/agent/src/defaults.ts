/**
 * The worker agent's defaults, defined once: HostAgent falls back to them and apps/worker's env.ts
 * uses them as the defaults of its variables (the README's Configuration table lists them).
 */

/** libvirt's URI (VIRTFLEET_LIBVIRT_URI). */
export const DEFAULT_LIBVIRT_URI = "qemu:///system";
/** Where VMs' disks and seed ISOs go (VIRTFLEET_STORAGE_DIR). */
export const DEFAULT_STORAGE_DIR = "/var/lib/virtfleet/vms";
/** Where base images are kept (VIRTFLEET_IMAGE_DIR). */
export const DEFAULT_IMAGE_DIR = "/var/lib/virtfleet/images";
/** The virt type (VIRTFLEET_VIRT_TYPE): `auto` picks kvm when /dev/kvm can be used, else qemu (TCG). */
export const DEFAULT_VIRT_TYPE = "auto";
/** Jobs run at once on a host (VIRTFLEET_CONCURRENCY). */
export const DEFAULT_CONCURRENCY = 4;
/** A host offers its memory times this to VMs (VIRTFLEET_OVERCOMMIT_MEMORY). */
export const DEFAULT_OVERCOMMIT_MEMORY = 1;
/** A host offers its CPUs times this to VMs (VIRTFLEET_OVERCOMMIT_CPU). */
export const DEFAULT_OVERCOMMIT_CPU = 4;
/** A host offers its storage filesystem's size times this to VMs' disks (VIRTFLEET_OVERCOMMIT_DISK). */
export const DEFAULT_OVERCOMMIT_DISK = 1;
/** How often a worker publishes its status; it counts as down after three missed (VIRTFLEET_HEARTBEAT_MS). */
export const DEFAULT_HEARTBEAT_MS = 5000;
/** BullMQ's job lock: a dead worker's jobs are picked up again after at most this long (VIRTFLEET_LOCK_MS). */
export const DEFAULT_LOCK_MS = 30_000;
/** How often BullMQ looks for stalled jobs (VIRTFLEET_STALLED_INTERVAL_MS). */
export const DEFAULT_STALLED_INTERVAL_MS = 15_000;
/** Stalls before BullMQ fails a job (VIRTFLEET_MAX_STALLED). */
export const DEFAULT_MAX_STALLED = 10;
