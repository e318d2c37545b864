import { randomUUID } from "node:crypto";
import {
  CreateJobData,
  DestroyJobData,
  GuestReadyOptions,
  HostId,
  isTerminal,
  type JobData,
  JobId,
  parseOrThrow,
  specFingerprint,
  type TerminalPhase,
  VirtfleetError,
  VmName,
  VmSpec,
} from "@virtfleet/core";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { closeRedis, createRedis, quietErrors } from "./connection.js";
import { EventLog } from "./event-log.js";
import { HostRegistry, type HostView } from "./host-registry.js";
import { JobHandle } from "./job-handle.js";
import { Keys } from "./keys.js";
import { type VmRecord, VmRegistry } from "./vm-registry.js";

export interface FleetClientOptions {
  /** Redis URL. */
  redisUrl: string;
  /** Key prefix shared by every part of one fleet. Default `virtfleet`. */
  prefix?: string;
}

export interface CreateOptions {
  /** Pin the VM to this host. */
  host?: string;
  /** Wait for the guest's ready line on its serial console. */
  guestReady?: Partial<GuestReadyOptions> | boolean;
}

export interface DestroyOptions {
  /** The host to destroy on when the fleet does not know the VM. */
  host?: string;
}

/** The default job options: retry transient failures with exponential backoff. */
export const JOB_ATTEMPTS = 5;
const JOB_BACKOFF_MS = 2000;

/** The producer's side of the fleet: create and destroy VMs, follow jobs. Used by the CLI and the API. */
export class FleetClient {
  readonly keys: Keys;
  readonly hosts: HostRegistry;
  readonly vms: VmRegistry;
  readonly log: EventLog;
  readonly #redis: Redis;
  readonly #queues = new Map<string, Queue>();
  #closing: Promise<void> | undefined;

  constructor(options: FleetClientOptions) {
    this.keys = new Keys(options.prefix);
    this.#redis = createRedis({ url: options.redisUrl, connectionName: "virtfleet-client" });
    this.hosts = new HostRegistry(this.#redis, this.keys);
    this.vms = new VmRegistry(this.#redis, this.keys);
    this.log = new EventLog(this.#redis, this.keys);
  }

  #queue(hostId: string): Queue {
    let queue = this.#queues.get(hostId);
    if (queue === undefined) {
      queue = new Queue(this.keys.hostQueue(hostId), { connection: this.#redis, prefix: this.keys.prefix });
      this.#queues.set(hostId, queue);
    }
    return queue;
  }

  /** A new blocking connection (for following events). */
  connect(): Redis {
    return quietErrors(this.#redis.duplicate());
  }

  job(jobId: string): JobHandle {
    return new JobHandle(
      jobId,
      this.log,
      () => this.connect(),
      (id) => this.cancelJob(id),
    );
  }

  /** Picks a host for a spec: the pinned one, else an up, undrained host with the images, most free memory first. */
  async place(spec: VmSpec, pinned?: string): Promise<HostView> {
    if (pinned !== undefined) {
      const hostId = parseOrThrow(HostId, pinned, "host");
      const view = await this.hosts.get(hostId);
      if (view === undefined)
        throw new VirtfleetError("HOST_NOT_FOUND", `no host "${hostId}" in the fleet`, { field: "host" });
      if (!view.up) throw new VirtfleetError("HOST_NOT_FOUND", `host "${hostId}" is down`, { field: "host" });
      return view;
    }
    const candidates = (await this.hosts.list()).filter((h) => h.up && !h.status.draining);
    if (candidates.length === 0) throw new VirtfleetError("NO_CAPACITY", "no host is up to take the VM");
    return candidates[Math.floor(Math.random() * candidates.length)] as HostView;
  }

  /**
   * Asks for one VM. Validates the spec (a bad one throws ValidationError and nothing is enqueued),
   * claims the name fleet-wide, places it and enqueues the create job. Asking again for the same VM
   * returns the first job.
   */
  async createVm(specInput: unknown, options: CreateOptions = {}): Promise<JobHandle> {
    const spec = parseOrThrow(VmSpec, specInput, "spec");
    const guestReady =
      options.guestReady === undefined || options.guestReady === false
        ? undefined
        : parseOrThrow(GuestReadyOptions, options.guestReady === true ? {} : options.guestReady, "guestReady");
    const host = await this.place(spec, options.host);
    const jobId = `create-${randomUUID()}`;
    const fingerprint = specFingerprint(spec);
    const record: VmRecord = {
      name: spec.name,
      hostId: host.status.hostId,
      state: "creating",
      fingerprint,
      jobId,
      memoryMiB: spec.memoryMiB,
      vcpus: spec.vcpus,
      labels: spec.labels,
      updatedAt: new Date().toISOString(),
    };
    const claim = await this.vms.claim(record);
    if (claim.outcome === "same") return this.job(claim.record.jobId);
    if (claim.outcome === "clash") {
      throw new VirtfleetError(
        "NAME_CLASH",
        `a VM named "${spec.name}" already exists with another spec (on ${claim.record.hostId})`,
        {
          field: "spec.name",
        },
      );
    }
    const data: JobData = CreateJobData.parse({
      kind: "create",
      jobId,
      hostId: host.status.hostId,
      spec,
      ...(guestReady === undefined ? {} : { guestReady }),
      requestedAt: new Date().toISOString(),
    });
    await this.#enqueue(data, spec.name);
    return this.job(jobId);
  }

  /** Destroys a VM wherever it lives. Destroying a VM that is gone succeeds. */
  async destroyVm(nameInput: unknown, options: DestroyOptions = {}): Promise<JobHandle> {
    const name = parseOrThrow(VmName, nameInput, "name");
    const record = await this.vms.get(name);
    let hostId = record?.hostId;
    if (hostId === undefined || hostId === "") {
      if (options.host !== undefined) hostId = parseOrThrow(HostId, options.host, "host");
      else {
        const up = (await this.hosts.list()).filter((h) => h.up);
        if (up.length !== 1) {
          throw new VirtfleetError("VM_NOT_FOUND", `the fleet knows no VM "${name}"; name its host with --host`, {
            field: "name",
          });
        }
        hostId = (up[0] as HostView).status.hostId;
      }
    }
    const jobId = `destroy-${randomUUID()}`;
    if (record !== undefined) await this.vms.setState(name, "destroying");
    const data: JobData = DestroyJobData.parse({
      kind: "destroy",
      jobId,
      hostId,
      name,
      requestedAt: new Date().toISOString(),
    });
    await this.#enqueue(data, name);
    return this.job(jobId);
  }

  async #enqueue(data: JobData, vm: string): Promise<void> {
    await this.log.createJob({
      jobId: data.jobId,
      kind: data.kind,
      vm,
      hostId: data.hostId,
      data: JSON.stringify(data),
    });
    await this.log.append({ jobId: data.jobId, kind: data.kind, vm, phase: "queued", message: "accepted" });
    await this.log.append({
      jobId: data.jobId,
      kind: data.kind,
      vm,
      phase: "placed",
      host: data.hostId,
      message: `placed on host ${data.hostId}`,
    });
    await this.#queue(data.hostId).add(data.kind, data, {
      jobId: data.jobId,
      attempts: JOB_ATTEMPTS,
      backoff: { type: "exponential", delay: JOB_BACKOFF_MS, jitter: 0.5 },
      removeOnComplete: { age: 24 * 3600, count: 10_000 },
      removeOnFail: { age: 7 * 24 * 3600 },
    });
  }

  /**
   * Cancels a job. A job still waiting (or waiting to retry) is taken out of its queue and ends
   * `cancelled` at once; a running one is aborted on the worker that holds it, which kills its
   * subprocess, rolls back what it made and reports `cancelled`. A job that already ended is left as
   * it is. Returns what happened.
   */
  async cancelJob(jobIdInput: unknown): Promise<"cancelled" | "cancelling" | TerminalPhase> {
    const jobId = parseOrThrow(JobId, jobIdInput, "jobId");
    const record = await this.log.getJob(jobId);
    if (record === undefined) throw new VirtfleetError("JOB_NOT_FOUND", `no job "${jobId}"`, { field: "jobId" });
    if (isTerminal(record.phase)) return record.phase;
    await this.log.requestCancel(jobId);
    const hostId = record.hostId;
    if (hostId !== undefined) {
      const job = await this.#queue(hostId).getJob(jobId);
      const state = job === undefined ? "unknown" : await job.getState();
      if (job !== undefined && ["waiting", "delayed", "prioritized", "paused", "waiting-children"].includes(state)) {
        const removed = await job.remove().then(
          () => true,
          () => false, // it became active meanwhile: the worker will see the request
        );
        if (removed) {
          await this.log.append({
            jobId,
            kind: record.kind,
            vm: record.vm,
            phase: "cancelled",
            message: "cancelled before it ran",
            host: hostId,
            error: { code: "CANCELLED", message: "cancelled by request" },
          });
          if (record.kind === "create") {
            const vm = await this.vms.get(record.vm);
            if (vm?.jobId === jobId) await this.vms.remove(record.vm);
          } else {
            const vm = await this.vms.get(record.vm);
            if (vm?.state === "destroying") await this.vms.setState(record.vm, "running");
          }
          return "cancelled";
        }
      }
      await this.#redis.publish(this.keys.cancelChannel(hostId), jobId);
    }
    return "cancelling";
  }

  /** Closes every connection; safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const queue of this.#queues.values()) {
        await queue.close().catch(() => undefined);
      }
      await closeRedis(this.#redis);
    })();
    return this.#closing;
  }
}
