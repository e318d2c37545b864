import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { OpenBundles } from "../bundles/open-bundles.js";
import type { HostRegistry } from "../hosts/host-registry.js";
import type { EventLog } from "../records/event-log.js";
import type { JobHandle } from "../records/job-handle.js";
import type { PendingJobs } from "../records/pending-jobs.js";
import type { VmRegistry } from "../records/vm-registry.js";
import type { Keys } from "../redis/keys.js";

/** What the producer's operations (create-many, destroy, cancel, fleet-events) share: FleetClient's parts. */
export interface ProducerContext {
  readonly redis: Redis;
  readonly keys: Keys;
  readonly hosts: HostRegistry;
  readonly vms: VmRegistry;
  readonly log: EventLog;
  readonly pending: PendingJobs;
  /** The bundles this producer added that later creates may join. */
  readonly bundles: OpenBundles;
  /** A host's BullMQ queue (one per host, kept open). */
  queue(hostId: string): Queue;
  /** Runs `issue`, whose commands to the hosts' queues leave in one write (see redis/together.ts). */
  sendTogether<T>(issue: () => T): T;
  /** A new blocking connection. */
  connect(): Redis;
  /** A handle of a job. */
  job(jobId: string): JobHandle;
}
