import {
  type CreateJobData,
  type ErrorInfo,
  isTerminal,
  type JobData,
  PlacementOptions,
  toErrorInfo,
} from "@virtfleet/core";
import {
  type FleetClient,
  failPending,
  jobOptions,
  jobsInQueue,
  PENDING_JOB_TIMEOUT_MS,
  PendingJobs,
  type PendingRecords,
  queuedJobs,
  vmOfJob,
} from "@virtfleet/fleet";
import type { Redis } from "ioredis";

const lost = (hostId: string): ErrorInfo => ({ code: "HOST_LOST", message: `host ${hostId} stopped answering` });

export interface HostMonitorOptions {
  /** Placement (re-placing a lost host's waiting jobs), the records and the hosts' queues. */
  fleet: FleetClient;
  /** A connection of the fleet's Redis (the pending set, the once-per-outage marks). */
  redis: Redis;
}

/**
 * The fleet monitor's work, run on the worker side by the one worker that holds the monitor lock
 * (see HostAgent): deals with hosts whose heartbeat expired (checkHosts) and with admissions whose
 * producer died before it enqueued the job (sweepPending). Producers never run it.
 */
export class HostMonitor {
  readonly #fleet: FleetClient;
  readonly #redis: Redis;
  readonly #records: PendingRecords;

  constructor(options: HostMonitorOptions) {
    this.#fleet = options.fleet;
    this.#redis = options.redis;
    this.#records = {
      pending: new PendingJobs(options.redis, options.fleet.keys),
      log: options.fleet.log,
      vms: options.fleet.vms,
    };
  }

  /**
   * Deals with hosts whose heartbeat has expired, once per outage: create jobs still waiting in a
   * dead host's queue are re-placed on other hosts (pinned ones fail with HOST_LOST); jobs it was
   * running end `failed` with HOST_LOST and their room is released. Destroy jobs wait for the host to
   * come back (the VM is there). Run by one process at a time (workers elect one). Returns the hosts
   * it dealt with.
   */
  async checkHosts(): Promise<string[]> {
    const handled: string[] = [];
    for (const view of await this.#fleet.hosts.list()) {
      const hostId = view.status.hostId;
      if (view.up) continue;
      const first = await this.#redis.set(this.#fleet.keys.hostDown(hostId), new Date().toISOString(), "NX");
      if (first === null) continue;
      await this.#hostLost(hostId);
      handled.push(hostId);
    }
    return handled;
  }

  async #hostLost(hostId: string): Promise<void> {
    const { log } = this.#records;
    const queue = this.#fleet.hostQueue(hostId);
    for (const job of await queue.getJobs(["active", "waiting", "delayed", "prioritized"])) {
      if (job?.id === undefined) continue;
      // A bundle is dealt with as one: taken out of the queue if it has not started, then its jobs one by one.
      let state: string | undefined;
      let removed: boolean | undefined;
      for (const data of queuedJobs(job).jobs) {
        const record = await log.getJob(data.jobId).catch(() => undefined);
        if (record === undefined || isTerminal(record.phase)) continue;
        state ??= await job.getState();
        if (data.kind === "destroy") {
          // The VM is still there: a destroy waits for the host to come back, unless it was running.
          if (state === "active") await this.#fail(hostId, data, lost(hostId));
          continue;
        }
        removed ??=
          state === "active" ||
          (await job.remove().then(
            () => true,
            () => false,
          ));
        if (!removed) break; // it started meanwhile: its worker (if alive) goes on
        await this.#createLost(hostId, data, state);
      }
    }
  }

  /** Ends a job `failed` (`message`: the error's own by default); a create's VM is forgotten (its room and quota given back). */
  async #fail(hostId: string, data: JobData, error: ErrorInfo, message = error.message): Promise<void> {
    const { log, vms } = this.#records;
    const vm = vmOfJob(data);
    await log.append({ jobId: data.jobId, kind: data.kind, vm, phase: "failed", host: hostId, message, error });
    if (data.kind === "create") await vms.forget(vm, data.jobId);
  }

  /**
   * A create of a lost host (taken out of its queue unless `state` is active): one running there, or
   * pinned there, fails HOST_LOST; any other is placed again on another host.
   */
  async #createLost(hostId: string, data: CreateJobData, state: string): Promise<void> {
    const { log, vms } = this.#records;
    const vm = data.spec.name;
    if (state === "active" || data.placement?.host !== undefined) {
      await this.#fail(hostId, data, lost(hostId));
      return;
    }
    // Waiting and not pinned: place it again, on another host.
    await vms.ledger.release(hostId, vm);
    try {
      const placement = data.placement ?? PlacementOptions.parse({});
      const next = await this.#fleet.placeAndClaim(data.spec, placement, 0, [hostId]);
      await vms.placed(vm, next, placement.group);
      const moved: JobData = { ...data, hostId: next };
      await log.append({
        jobId: data.jobId,
        kind: "create",
        vm,
        phase: "placed",
        host: next,
        message: `re-placed on host ${next}: host ${hostId} was lost`,
      });
      await this.#fleet.hostQueue(next).add("create", moved, jobOptions(data.jobId));
    } catch (error) {
      const info = toErrorInfo(error);
      await this.#fail(hostId, data, info, `host ${hostId} was lost and ${info.message}`);
    }
  }

  /**
   * Repairs admissions whose producer died (or failed) before it enqueued the job: a create job
   * admitted more than `timeoutMs` ago that its host's queue does not hold (neither as a BullMQ job
   * of its own nor in a bundle) ends `failed` (INTERNAL) and gives its room, quota and name back;
   * one that its queue holds (or that already ran) just leaves the pending set. Run next to
   * checkHosts. Returns the jobs it ended.
   */
  async sweepPending(timeoutMs = PENDING_JOB_TIMEOUT_MS): Promise<string[]> {
    const { pending, log } = this.#records;
    const stale: { jobId: string; hostId: string | undefined; waiting: boolean }[] = [];
    for (const jobId of await pending.olderThan(Date.now() - timeoutMs)) {
      const record = await log.getJob(jobId).catch(() => undefined);
      stale.push({
        jobId,
        hostId: record?.hostId,
        waiting: record !== undefined && ["queued", "placed"].includes(record.phase),
      });
    }
    // What each host's queue holds of its jobs not yet started, read once per host.
    const byHost = new Map<string, string[]>();
    for (const { jobId, hostId, waiting } of stale) {
      if (!waiting || hostId === undefined) continue;
      const list = byHost.get(hostId) ?? [];
      list.push(jobId);
      byHost.set(hostId, list);
    }
    const queued = new Set<string>();
    for (const [hostId, jobIds] of byHost) {
      for (const jobId of await jobsInQueue(this.#fleet.hostQueue(hostId), jobIds)) queued.add(jobId);
    }
    const ended: string[] = [];
    for (const { jobId, waiting } of stale) {
      if (!waiting || queued.has(jobId)) {
        await pending.enqueued([jobId]);
        continue;
      }
      if (await failPending(this.#records, jobId, "the create job was admitted but never reached its host's queue")) {
        ended.push(jobId);
      }
    }
    return ended;
  }
}
