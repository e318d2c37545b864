import { z } from "zod";

/** The key prefix of a fleet when none is given (VIRTFLEET_PREFIX). */
export const DEFAULT_PREFIX = "virtfleet";
const PREFIX_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** A fleet's key prefix (VIRTFLEET_PREFIX of every component), DEFAULT_PREFIX when unset. */
export const KeyPrefix = z
  .string()
  .regex(PREFIX_PATTERN, "is not a key prefix (letters, digits, _ . -)")
  .default(DEFAULT_PREFIX);

/** Every Redis key and queue name virtfleet uses, in one place. Scripts are given every key they touch. */
export class Keys {
  readonly prefix: string;

  constructor(prefix = DEFAULT_PREFIX) {
    if (!PREFIX_PATTERN.test(prefix)) throw new Error(`invalid key prefix: ${prefix}`);
    this.prefix = prefix;
  }

  /** The BullMQ queue of one host (BullMQ's keys are `<prefix>:host.<id>:…`). */
  hostQueue(hostId: string): string {
    return `host.${hostId}`;
  }

  /** A host's last published status; expires unless the worker keeps it alive. */
  hostStatus(hostId: string): string {
    return `${this.prefix}:host:${hostId}`;
  }

  /** Written before each `WAIT` of a ReplicationBarrier (see redis/replication.ts); expires by itself. */
  replicationFence(): string {
    return `${this.prefix}:replication-fence`;
  }

  /** Every host ever registered (so a down host is still listed). */
  hosts(): string {
    return `${this.prefix}:hosts`;
  }

  job(jobId: string): string {
    return `${this.prefix}:job:${jobId}`;
  }

  jobEvents(jobId: string): string {
    return `${this.prefix}:job:${jobId}:events`;
  }

  /** Every event of every job, for `virtfleet watch`. */
  allEvents(): string {
    return `${this.prefix}:events`;
  }

  vm(name: string): string {
    return `${this.prefix}:vm:${name}`;
  }

  vms(): string {
    return `${this.prefix}:vms`;
  }

  /** Before the placement index: a host's capacity and allocation (moved into placementHosts by setCapacity). */
  alloc(hostId: string): string {
    return `${this.prefix}:alloc:${hostId}`;
  }

  /** Before the placement index: the room each VM held on a host (moved into placementClaims by setCapacity). */
  claims(hostId: string): string {
    return `${this.prefix}:claims:${hostId}`;
  }

  /**
   * Every host's room, one hash: `<host>.capMem`, `.capVcpus`, `.capDisk` (GiB; absent: not limited by
   * disk), `.mem`, `.vcpus`, `.disk` (claimed), `.class` (eligibility class), `.draining` ('1': on its own).
   */
  placementHosts(): string {
    return `${this.prefix}:placement:hosts`;
  }

  /** The room each VM holds: vm → "<host>:<memoryMiB>:<vcpus>:<diskGiB>" (VM names are fleet-unique). */
  placementClaims(): string {
    return `${this.prefix}:placement:claims`;
  }

  /**
   * Every eligibility class seen: class -> the status JSON of its first host (hosts of a class are
   * alike for eligibility), so placement reads the classes, not every host.
   */
  placementClasses(): string {
    return `${this.prefix}:placement:classes`;
  }

  /** The hosts of one eligibility class (see hostClass), scored by free memory (MiB): the placement index. */
  placementFree(hostClass: string): string {
    return `${this.prefix}:placement:free:${hostClass}`;
  }

  /** Host → when its heartbeat expires (ms since epoch): a host is up while its score is in the future. */
  placementAlive(): string {
    return `${this.prefix}:placement:alive`;
  }

  /** The hosts an operator drained. */
  placementDrained(): string {
    return `${this.prefix}:placement:drained`;
  }

  /** An anti-affinity group: vm → host. */
  group(name: string): string {
    return `${this.prefix}:group:${name}`;
  }

  /** Held by the one worker that watches for dead hosts. */
  monitorLock(): string {
    return `${this.prefix}:monitor`;
  }

  /** Set once a dead host's jobs have been dealt with. */
  hostDown(hostId: string): string {
    return `${this.prefix}:down:${hostId}`;
  }

  /** Before the placement index: an operator's drain mark on a host (moved into placementDrained by setCapacity). */
  drain(hostId: string): string {
    return `${this.prefix}:drain:${hostId}`;
  }

  /** A tenant's usage (vms, mem, vcpus, disk) against its quota. */
  usage(tenant: string): string {
    return `${this.prefix}:usage:${tenant}`;
  }

  /** The quota each of a tenant's VMs holds: vm → "memoryMiB:vcpus[:diskGiB]". */
  usageVms(tenant: string): string {
    return `${this.prefix}:usage:${tenant}:vms`;
  }

  /** Create jobs admitted but not yet known to be in their host's queue: jobId → admitted at (ms). */
  pendingJobs(): string {
    return `${this.prefix}:pending`;
  }

  /** A tenant's stored batches: batchId → created at (ms). */
  tenantBatches(tenant: string): string {
    return `${this.prefix}:batches:${tenant}`;
  }

  batch(batchId: string): string {
    return `${this.prefix}:batch:${batchId}`;
  }

  batchItems(batchId: string): string {
    return `${this.prefix}:batch:${batchId}:items`;
  }

  batchEvents(batchId: string): string {
    return `${this.prefix}:batch:${batchId}:events`;
  }

  /** A tenant's stored idempotency answers: key → stored at (ms). */
  idempotencyKeys(scope: string): string {
    return `${this.prefix}:idem-keys:${scope}`;
  }

  /** An API idempotency key's stored answer. */
  idempotency(scope: string, key: string): string {
    return `${this.prefix}:idem:${scope}:${key}`;
  }

  /** A running job's cancel requests go to the worker holding it on this channel. */
  cancelChannel(hostId: string): string {
    return `${this.prefix}:cancel:${hostId}`;
  }

  /** The fleet's identity (a UUID, set once): written into every domain and VM folder virtfleet makes. */
  fleet(): string {
    return `${this.prefix}:fleet`;
  }

  /** Operators' reconcile requests (`virtfleet hosts reconcile`) go to the host's worker on this channel. */
  reconcileChannel(hostId: string): string {
    return `${this.prefix}:reconcile:${hostId}`;
  }

  /** A worker's answer to one reconcile request (short-lived). */
  reconcileReply(requestId: string): string {
    return `${this.prefix}:reconcile-reply:${requestId}`;
  }

  /** Power requests (suspend/resume one VM, see PowerClient) go to the host's worker on this channel. */
  powerChannel(hostId: string): string {
    return `${this.prefix}:power:${hostId}`;
  }

  /** A worker's answer to one power request: a list the asker BLPOPs (short-lived). */
  powerReply(requestId: string): string {
    return `${this.prefix}:power-reply:${requestId}`;
  }

  /** Console requests (the tail of a VM's serial console, see ConsoleClient) go to the host's worker on this channel. */
  consoleChannel(hostId: string): string {
    return `${this.prefix}:console:${hostId}`;
  }

  /** A worker's answer to one console request: a list the asker BLPOPs (short-lived). */
  consoleReply(requestId: string): string {
    return `${this.prefix}:console-reply:${requestId}`;
  }

  /** The image catalogue: name → its record (JSON, see ImageRecord). */
  images(): string {
    return `${this.prefix}:images`;
  }

  /** The hosts that hold a catalogued image. */
  imageHosts(name: string): string {
    return `${this.prefix}:image-hosts:${name}`;
  }

  /** Operators' file imports (`virtfleet images import --file`) go to the host's worker on this channel. */
  imageChannel(hostId: string): string {
    return `${this.prefix}:image-import:${hostId}`;
  }

  /** A worker's answer to one file import (short-lived). */
  imageReply(requestId: string): string {
    return `${this.prefix}:image-import-reply:${requestId}`;
  }

  /** When each image was last used on a host: name → ms (a sorted set; eviction goes oldest first). */
  imageUse(hostId: string): string {
    return `${this.prefix}:image-use:${hostId}`;
  }
}
